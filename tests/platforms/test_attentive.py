"""Attentive: Custom Events valid against the official request schema; its character rules; its rate-limit headers."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest
import responses
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from connectors.attentive import AttentiveConnector, AttentiveSettings
from connectors.base import ConnectorError, OutcomeKind, SkipEvent
from connectors.http import BlockedDestination, HttpClient, TransportError
from connectors.kit import ConnectorContract
from tests.platforms.conftest import (
    REVIEW_REQUEST,
    REVIEW_SUBMITTED,
    SPECS_DIR,
    answer,
    assert_matches_golden,
    keys_everywhere,
)

KEY = "attn_0123456789abcdef0123456789abcdef"
SETTINGS = {"api_key": KEY, "base_url": "https://api.attentivemobile.com"}
ME = "https://api.attentivemobile.com/v1/me"
TYPE_FORBIDDEN = set("\"'(){}[]\\|,")  # from the schema's description of `type`
KEY_FORBIDDEN = set('"{}[]\\|')  # from the schema's description of `properties`


class TestAttentiveContract(ConnectorContract):
    connector_class = AttentiveConnector
    sample_settings = MappingProxyType({"api_key": KEY})
    sample_event = REVIEW_REQUEST
    golden_name = "attentive"


@pytest.fixture(scope="module")
def validator() -> OAS30Validator:
    schema = json.loads((SPECS_DIR / "attentive-custom-events-request.json").read_text(encoding="utf-8"))
    return OAS30Validator(schema, format_checker=oas30_format_checker)


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return AttentiveConnector().build_request(event, {**SETTINGS, **settings})


def with_customer(**changes: Any) -> Any:
    return dataclasses.replace(REVIEW_REQUEST, customer=dataclasses.replace(REVIEW_REQUEST.customer, **changes))


def test_the_request_matches_the_golden_file() -> None:
    assert_matches_golden("attentive", build())


@pytest.mark.parametrize(
    "event",
    [
        REVIEW_REQUEST,
        REVIEW_SUBMITTED,
        with_customer(email=None, external_id=None),
        with_customer(phone=None, email=None),
        dataclasses.replace(REVIEW_REQUEST, name='Acme\'s "Review" (Request), [now]'),
    ],
    ids=["request", "submitted", "phone-only", "external-id-only", "awkward-name"],
)
def test_every_body_is_valid_against_attentives_official_schema_and_its_prose_rules(
    event: Any, validator: OAS30Validator
) -> None:
    body = build(event).json
    errors = [error.message for error in validator.iter_errors(body)]
    assert not errors
    assert not TYPE_FORBIDDEN & set(body["type"])
    assert all(not KEY_FORBIDDEN & set(key) for key in keys_everywhere(body["properties"]))


def test_it_posts_to_custom_events_with_a_bearer_key() -> None:
    request = build()
    assert request.method == "POST" and request.url == "https://api.attentivemobile.com/v1/events/custom"
    assert request.headers == {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert request.secrets == (KEY,)


def test_the_action_id_is_the_external_event_id_and_the_time_is_rfc3339_utc() -> None:
    paris = timezone(timedelta(hours=2))
    event = dataclasses.replace(REVIEW_REQUEST, occurred_at=datetime(2026, 3, 14, 17, 0, 0, 5, tzinfo=paris))
    body = build(event).json
    assert body["externalEventId"] == REVIEW_REQUEST.id
    assert body["occurredAt"] == "2026-03-14T15:00:00Z"


def test_the_user_carries_phone_email_and_the_external_id_as_client_user_id() -> None:
    assert build().json["user"] == {
        "phone": "+14155550100",
        "email": "ada@example.com",
        "externalIdentifiers": {"clientUserId": "cus_42"},
    }


def test_a_phone_that_is_not_e164_and_an_external_id_over_100_characters_are_left_out() -> None:
    user = build(with_customer(phone="415-555-0100", external_id="x" * 101)).json["user"]
    assert user == {"email": "ada@example.com"}


def test_a_customer_with_no_usable_identifier_is_skipped_as_missing_identity() -> None:
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(email=None, phone="415-555-0100", external_id=None))
    assert skipped.value.code == "missing_identity"


def test_the_event_type_loses_the_characters_attentive_refuses_deterministically() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, name='Acme\'s "Review" (Request), [now] {x} a|b\\c')
    assert build(event).json["type"] == build(event).json["type"] == "Acmes Review Request now x abc"
    assert build().json["type"] == "Acme - Review Request"


def test_property_keys_lose_the_characters_attentive_refuses_at_every_level() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, properties={'gift "note"': "hi", "box": {"size[cm]": 3, "a|b": [1]}})
    properties = build(event).json["properties"]
    assert properties == {"gift note": "hi", "box": {"sizecm": 3, "ab": [1]}}


def test_sms_usable_flat_fields_and_the_mms_image_sit_beside_the_item_list() -> None:
    properties = build().json["properties"]
    assert properties["items"] == REVIEW_REQUEST.properties["items"]  # still usable in email
    assert properties["product_name"] == "Linen Shirt" and properties["product_id"] == "p-1"
    assert properties["product_url"] == "https://acme.example.com/products/linen-shirt"
    assert properties["product_image_url"] == properties["mediaUrl"] == "https://cdn.acme.example.com/linen-shirt.jpg"
    assert properties["order_id"] == "1001"


def test_a_review_is_flattened_for_sms() -> None:
    properties = build(REVIEW_SUBMITTED).json["properties"]
    assert (properties["review_rating"], properties["review_title"], properties["product_id"]) == (5, "Lovely", "p-1")
    assert "mediaUrl" not in properties


def test_it_declares_attentives_limits_and_the_12_hour_window() -> None:
    capabilities = AttentiveConnector.capabilities
    assert capabilities.staleness_seconds == 12 * 60 * 60
    assert capabilities.rate_limit_per_second == 150
    assert capabilities.dedupe_field == "externalEventId"
    assert set(capabilities.identities) == {"phone", "email", "external_id"}


def test_a_base_url_override_points_every_call_at_that_server() -> None:
    assert (
        build(base_url="https://sandbox.attentive.example/").url == "https://sandbox.attentive.example/v1/events/custom"
    )
    assert AttentiveSettings().load({}) == {"base_url": "https://api.attentivemobile.com"}


@responses.activate
def test_a_good_key_verifies_through_the_me_endpoint() -> None:
    me = responses.get(ME, json={"applicationName": "Tidings", "companyName": "Acme", "companyId": "MDc6Q29t"})
    AttentiveConnector().verify(SETTINGS, HttpClient())
    assert me.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


@responses.activate
@pytest.mark.parametrize(("status", "words"), [(401, "rejected the API key"), (403, "permissions")])
def test_a_wrong_key_fails_verification_naming_the_field(status: int, words: str) -> None:
    responses.get(ME, status=status, json={"error": {"id": 1, "message": "Unauthorized"}})
    with pytest.raises(ConnectorError) as failed:
        AttentiveConnector().verify(SETTINGS, HttpClient())
    assert failed.value.credentials and failed.value.field == "api_key"
    assert words in failed.value.message and "Unauthorized" in failed.value.message
    assert KEY not in failed.value.message


@responses.activate
def test_an_attentive_outage_fails_verification_without_blaming_the_key() -> None:
    responses.get(ME, status=500, body="")
    with pytest.raises(ConnectorError) as failed:
        AttentiveConnector().verify(SETTINGS, HttpClient())
    assert not failed.value.credentials and "HTTP 500" in failed.value.message


LIMITS = {"x-ratelimit-limit": "150", "x-ratelimit-remaining": "0"}


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (200, {"x-ratelimit-remaining": "149"}, "", OutcomeKind.DELIVERED, None),
        (400, {}, {"error": {"id": 400, "message": "Invalid phone number"}}, OutcomeKind.PERMANENT, None),
        (400, {"Content-Type": "text/plain"}, "", OutcomeKind.PERMANENT, None),
        (401, {}, {"error": {"id": 401, "message": "Unauthorized"}}, OutcomeKind.CREDENTIALS, None),
        (403, {}, {"error": {"id": 403, "message": "Access Denied"}}, OutcomeKind.CREDENTIALS, None),
        (404, {}, "", OutcomeKind.PERMANENT, None),
        (429, {**LIMITS, "Retry-After": "3"}, "", OutcomeKind.RATE_LIMITED, 3),
        (429, LIMITS, "", OutcomeKind.RATE_LIMITED, 1),
        (429, {}, "", OutcomeKind.RATE_LIMITED, None),
        (500, {}, "", OutcomeKind.RETRY, None),
        (502, {}, "", OutcomeKind.RETRY, None),
        (503, {"Retry-After": "10"}, "", OutcomeKind.RETRY, 10),
    ],
)
def test_answers_are_classified_with_attentives_rate_limit_headers(
    status: int, headers: dict[str, str], body: Any, kind: OutcomeKind, retry_after: float | None
) -> None:
    outcome = AttentiveConnector().classify(answer(status, body, headers))
    assert (outcome.kind, outcome.retry_after) == (kind, retry_after)


def test_the_reason_is_attentives_error_message() -> None:
    body = {"error": {"id": 400, "message": "Invalid phone number"}}
    assert AttentiveConnector().classify(answer(400, body)).reason == "HTTP 400: Invalid phone number"
    assert AttentiveConnector().classify(answer(400, "", {})).reason == "HTTP 400 Bad Request"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TransportError("timeout", "timed out talking to api.attentivemobile.com"), OutcomeKind.RETRY),
        (BlockedDestination("destination sandbox.example is a private or reserved address"), OutcomeKind.PERMANENT),
    ],
)
def test_timeouts_retry_and_a_refused_destination_is_final(error: Exception, kind: OutcomeKind) -> None:
    assert AttentiveConnector().classify(None, error).kind == kind


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_200() -> None:
    request = build()
    responses.post(
        "https://api.attentivemobile.com/v1/events/custom",
        status=200,
        body="",
        match=[responses.matchers.json_params_matcher(request.json)],
    )
    assert AttentiveConnector().classify(HttpClient().send(request)).kind == OutcomeKind.DELIVERED
