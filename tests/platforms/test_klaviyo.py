"""Klaviyo: Create Event exactly as the official SDK's model takes it; JSON:API errors; the SDK's retry rules."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import marshmallow as ma
import pytest
import requests
import responses
from klaviyo_api import KlaviyoAPI
from openapi_client.models import EventCreateQueryV2

from connectors.base import ConnectorError, OutcomeKind, SkipEvent
from connectors.http import BlockedDestination, HttpClient, TransportError
from connectors.kit import ConnectorContract
from connectors.klaviyo import REVISION, KlaviyoConnector, KlaviyoCredentials, KlaviyoSettings
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer, assert_matches_golden

KEY = "pk_0123456789abcdef0123456789abcdef01"
SETTINGS = {"api_key": KEY, "base_url": "https://a.klaviyo.com"}
ACCOUNTS = "https://a.klaviyo.com/api/accounts"


class TestKlaviyoContract(ConnectorContract):
    connector_class = KlaviyoConnector
    sample_settings = MappingProxyType({"api_key": KEY})
    sample_event = REVIEW_REQUEST
    golden_name = "klaviyo"


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return KlaviyoConnector().build_request(event, {**SETTINGS, **settings})


def attributes(event: Any = REVIEW_REQUEST) -> dict[str, Any]:
    return build(event).json["data"]["attributes"]


def jsonapi_error(status: int, code: str, detail: str) -> dict[str, Any]:
    return {"errors": [{"id": "e1", "status": status, "code": code, "title": code.title(), "detail": detail}]}


def test_the_request_matches_the_golden_file() -> None:
    assert_matches_golden("klaviyo", build())


@pytest.mark.parametrize("event", [REVIEW_REQUEST, REVIEW_SUBMITTED], ids=["request", "submitted"])
def test_every_body_is_valid_for_the_official_sdk_model_with_no_field_it_would_drop(event: Any) -> None:
    body = build(event).json
    model = EventCreateQueryV2.from_dict(body)
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert dumped["data"]["attributes"].pop("backfill") is False  # the default we rely on: flows do trigger
    assert dumped == body


def test_the_revision_is_pinned_to_the_one_the_sdk_sends() -> None:
    request = build()
    assert request.headers["revision"] == REVISION == KlaviyoAPI._REVISION
    assert request.url == "https://a.klaviyo.com/api/events"
    assert request.headers["Authorization"] == f"Klaviyo-API-Key {KEY}"
    assert request.headers["Content-Type"] == request.headers["Accept"] == "application/vnd.api+json"
    assert request.secrets == (KEY,)


def test_the_action_id_is_the_unique_id_and_the_time_is_utc_to_the_second() -> None:
    paris = timezone(timedelta(hours=2))
    event = dataclasses.replace(REVIEW_REQUEST, occurred_at=datetime(2026, 3, 14, 17, 0, 0, 987654, tzinfo=paris))
    assert attributes(event)["time"] == "2026-03-14T15:00:00Z"
    assert attributes(event)["unique_id"] == REVIEW_REQUEST.id


def test_the_profile_carries_email_phone_external_id_and_names() -> None:
    profile = attributes()["profile"]["data"]["attributes"]
    assert profile == {
        "email": "ada@example.com",
        "phone_number": "+14155550100",
        "external_id": "cus_42",
        "first_name": "Ada",
        "last_name": "Lovelace",
    }


def test_an_external_id_alone_is_enough() -> None:
    customer = dataclasses.replace(REVIEW_REQUEST.customer, email=None, phone=None)
    event = dataclasses.replace(REVIEW_REQUEST, customer=customer)
    assert attributes(event)["profile"]["data"]["attributes"]["external_id"] == "cus_42"


def test_a_phone_that_is_not_e164_is_left_out_rather_than_failing_the_event() -> None:
    customer = dataclasses.replace(REVIEW_REQUEST.customer, phone="(415) 555-0100")
    profile = attributes(dataclasses.replace(REVIEW_REQUEST, customer=customer))["profile"]["data"]["attributes"]
    assert "phone_number" not in profile and profile["email"] == "ada@example.com"


def test_a_customer_with_only_an_unusable_phone_is_skipped_as_missing_identity() -> None:
    customer = dataclasses.replace(REVIEW_REQUEST.customer, email=None, external_id=None, phone="0415 555 0100")
    with pytest.raises(SkipEvent) as skipped:
        build(dataclasses.replace(REVIEW_REQUEST, customer=customer))
    assert skipped.value.code == "missing_identity"
    assert "E.164" in skipped.value.message


def test_the_first_product_is_copied_to_flat_properties_beside_the_item_list() -> None:
    properties = attributes()["properties"]
    assert properties["items"] == REVIEW_REQUEST.properties["items"]
    assert properties["order_id"] == "1001"
    assert {k: properties[k] for k in ("product_id", "product_name", "product_url", "product_image_url")} == {
        "product_id": "p-1",
        "product_name": "Linen Shirt",
        "product_url": "https://acme.example.com/products/linen-shirt",
        "product_image_url": "https://cdn.acme.example.com/linen-shirt.jpg",
    }


def test_a_review_is_copied_to_flat_properties_so_flows_can_filter_on_the_rating() -> None:
    properties = attributes(REVIEW_SUBMITTED)["properties"]
    assert properties["review"]["rating"] == properties["review_rating"] == 5
    assert properties["product_id"] == "p-1"


def test_a_property_the_event_already_has_is_never_overwritten_by_a_copy() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, properties={**REVIEW_REQUEST.properties, "product_name": "Custom"})
    assert attributes(event)["properties"]["product_name"] == "Custom"


def test_a_metric_name_is_cut_to_klaviyos_limit() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, name="R" * 300)
    assert len(attributes(event)["metric"]["data"]["attributes"]["name"]) == 128


def test_a_base_url_override_points_every_call_at_that_server() -> None:
    assert build(base_url="https://staging.klaviyo.example/").url == "https://staging.klaviyo.example/api/events"
    assert KlaviyoSettings().load({}) == {"base_url": "https://a.klaviyo.com"}


def test_a_public_key_is_refused_with_a_message_that_says_which_key_to_use() -> None:
    with pytest.raises(ma.ValidationError) as refused:
        KlaviyoCredentials().load({"api_key": "AbC123"})
    assert "pk_" in str(refused.value.messages["api_key"])
    assert KlaviyoCredentials().load({"api_key": KEY}) == {"api_key": KEY}


@responses.activate
def test_a_good_key_verifies_through_get_accounts_with_the_pinned_revision() -> None:
    accounts = responses.get(ACCOUNTS, json={"data": [{"type": "account", "id": "AbC123"}]})
    KlaviyoConnector().verify(SETTINGS, HttpClient())
    sent = accounts.calls[0].request
    assert sent.headers["Authorization"] == f"Klaviyo-API-Key {KEY}" and sent.headers["revision"] == REVISION


@responses.activate
def test_a_wrong_key_fails_verification_naming_the_field_and_klaviyos_detail() -> None:
    responses.get(ACCOUNTS, status=401, json=jsonapi_error(401, "not_authenticated", "Missing or invalid private key."))
    with pytest.raises(ConnectorError) as failed:
        KlaviyoConnector().verify(SETTINGS, HttpClient())
    assert failed.value.credentials and failed.value.field == "api_key"
    assert "rejected the private API key" in failed.value.message and "Missing or invalid private key" in str(
        failed.value
    )
    assert KEY not in failed.value.message


@responses.activate
def test_a_key_without_the_scopes_fails_verification_saying_which_scopes() -> None:
    responses.get(ACCOUNTS, status=403, json=jsonapi_error(403, "permission_denied", "You lack permission."))
    with pytest.raises(ConnectorError) as failed:
        KlaviyoConnector().verify(SETTINGS, HttpClient())
    assert failed.value.credentials and failed.value.field == "api_key"
    assert "accounts:read" in failed.value.message and "events:write" in failed.value.message


@responses.activate
@pytest.mark.parametrize(
    ("status", "headers"), [(429, {"Retry-After": "1"}), (503, {}), (403, {"cf-mitigated": "challenge"})]
)
def test_a_busy_or_challenging_klaviyo_fails_verification_without_blaming_the_key(
    status: int, headers: dict[str, str]
) -> None:
    responses.get(ACCOUNTS, status=status, headers=headers, body="")
    with pytest.raises(ConnectorError) as failed:
        KlaviyoConnector().verify(SETTINGS, HttpClient())
    assert not failed.value.credentials and failed.value.field is None


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (202, {}, None, OutcomeKind.DELIVERED, None),
        (400, {}, jsonapi_error(400, "invalid", "'name' is required"), OutcomeKind.PERMANENT, None),
        (
            401,
            {},
            jsonapi_error(401, "not_authenticated", "Missing or invalid private key."),
            OutcomeKind.CREDENTIALS,
            None,
        ),
        (
            403,
            {},
            jsonapi_error(403, "permission_denied", "Missing scope events:write."),
            OutcomeKind.CREDENTIALS,
            None,
        ),
        (403, {"cf-mitigated": "challenge", "Content-Type": "text/html"}, "<html>", OutcomeKind.RETRY, None),
        (404, {}, jsonapi_error(404, "not_found", "Not found."), OutcomeKind.PERMANENT, None),
        (409, {}, jsonapi_error(409, "conflict", "Conflict."), OutcomeKind.PERMANENT, None),
        (415, {}, jsonapi_error(415, "unsupported_media_type", "Use JSON:API."), OutcomeKind.PERMANENT, None),
        (
            429,
            {"Retry-After": "30"},
            jsonapi_error(429, "throttled", "Request was throttled."),
            OutcomeKind.RATE_LIMITED,
            30,
        ),
        (429, {}, jsonapi_error(429, "throttled", "Request was throttled."), OutcomeKind.RATE_LIMITED, None),
        (500, {}, jsonapi_error(500, "error", "A server error occurred."), OutcomeKind.PERMANENT, None),
        (502, {}, "Bad gateway", OutcomeKind.PERMANENT, None),
        (503, {"Retry-After": "5"}, jsonapi_error(503, "unavailable", "Try later."), OutcomeKind.RETRY, 5),
        (504, {}, "", OutcomeKind.RETRY, None),
        (524, {}, "", OutcomeKind.RETRY, None),
    ],
)
def test_answers_are_classified_as_the_official_sdk_treats_them(
    status: int, headers: dict[str, str], body: Any, kind: str, retry_after: float | None
) -> None:
    outcome = KlaviyoConnector().classify(answer(status, body, headers))
    assert outcome.kind == kind
    assert outcome.retry_after == retry_after


def test_the_reason_is_the_json_api_errors_code_and_detail() -> None:
    body = {
        "errors": [
            {"code": "invalid", "title": "Invalid input.", "detail": "Invalid phone number format"},
            {"code": "invalid", "title": "Invalid input.", "detail": "'time' is in the future"},
        ]
    }
    reason = KlaviyoConnector().classify(answer(400, body)).reason
    assert reason == "HTTP 400: invalid: Invalid phone number format; invalid: 'time' is in the future"


def test_an_error_body_that_is_not_json_api_still_gives_a_reason() -> None:
    assert KlaviyoConnector().classify(answer(400, "oops")).reason == "HTTP 400: oops"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TransportError("timeout", "timed out talking to a.klaviyo.com"), OutcomeKind.RETRY),
        (TransportError("connection", "could not talk to a.klaviyo.com: ConnectionError"), OutcomeKind.RETRY),
        (BlockedDestination("destination staging.example is a private or reserved address"), OutcomeKind.PERMANENT),
    ],
)
def test_timeouts_and_resets_retry_and_a_refused_destination_is_final(error: Exception, kind: str) -> None:
    assert KlaviyoConnector().classify(None, error).kind == kind


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_202() -> None:
    request = build()
    posted = responses.post(
        "https://a.klaviyo.com/api/events", status=202, match=[responses.matchers.json_params_matcher(request.json)]
    )
    response = HttpClient().send(request)
    assert KlaviyoConnector().classify(response).kind == OutcomeKind.DELIVERED
    assert posted.calls[0].request.headers["Content-Type"] == "application/vnd.api+json"


@responses.activate
def test_a_connection_reset_from_klaviyo_is_retried() -> None:
    responses.post("https://a.klaviyo.com/api/events", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(TransportError) as failed:
        HttpClient().send(build())
    assert KlaviyoConnector().classify(None, failed.value).kind == OutcomeKind.RETRY
