"""Postscript: custom events in its type charset, time format and flat properties; shop and partner keys."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import marshmallow as ma
import pytest
import responses

from connectors.base import ConnectorError, OutcomeKind, SkipEvent
from connectors.http import BlockedDestination, HttpClient, TransportError, redact
from connectors.kit import ConnectorContract
from connectors.postscript import PostscriptConnector, PostscriptCredentials, PostscriptSettings, event_type
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer, assert_matches_golden

KEY = "sk_0123456789abcdef0123456789abcdef"
PARTNER = {"api_key": "sk_partner_0123456789abcdef", "shop_token": "sk_shop_fedcba9876543210"}
SETTINGS = {"api_key": KEY, "base_url": "https://api.postscript.io"}
ME = "https://api.postscript.io/api/v2/me"
RATE_LIMITED = {"error_code": 3002, "error_message": "Rate limit exceeded", "success": False}


class TestPostscriptContract(ConnectorContract):
    connector_class = PostscriptConnector
    sample_settings = MappingProxyType({"api_key": KEY})
    sample_event = REVIEW_REQUEST
    golden_name = "postscript"


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return PostscriptConnector().build_request(event, {**SETTINGS, **settings})


def assert_documented_rules(body: dict[str, Any]) -> None:
    """What developers.postscript.io/reference/create-custom-event states in prose (there is no usable schema)."""
    assert set(body) <= {"type", "subscriber_id", "phone", "email", "occurred_at", "properties", "external_id"}
    assert re.fullmatch(r"[A-Za-z0-9_]+", body["type"])
    assert {"phone", "email", "subscriber_id"} & set(body)
    datetime.strptime(body["occurred_at"], "%Y-%m-%d %H:%M:%S.%f")
    assert isinstance(body["external_id"], str) and body["external_id"]
    assert all(isinstance(v, str | bool | int | float) for v in body["properties"].values()), "properties are flat"


def test_the_request_matches_the_golden_file() -> None:
    assert_matches_golden("postscript", build())


@pytest.mark.parametrize("event", [REVIEW_REQUEST, REVIEW_SUBMITTED], ids=["request", "submitted"])
def test_every_body_follows_postscripts_documented_rules(event: Any) -> None:
    assert_documented_rules(build(event).json)


def test_it_posts_to_v2_events_with_the_shops_private_key() -> None:
    request = build()
    assert request.method == "POST" and request.url == "https://api.postscript.io/api/v2/events"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert "X-Postscript-Shop-Token" not in request.headers
    assert request.secrets == (KEY,)


def test_a_partner_sends_its_key_and_the_shops_token_both_redacted_when_recorded() -> None:
    request = build(**PARTNER)
    assert request.headers["Authorization"] == f"Bearer {PARTNER['api_key']}"
    assert request.headers["X-Postscript-Shop-Token"] == PARTNER["shop_token"]
    record = str(redact(request))
    assert PARTNER["api_key"] not in record and PARTNER["shop_token"] not in record


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Acme - Review Request", "Acme_Review_Request"),
        ("review_request", "review_request"),
        ("Café Zoë — Bewertung!", "Cafe_Zoe_Bewertung"),
        ("  Review   Submitted (5★) ", "Review_Submitted_5"),
        ("Order-Shipped.v2", "Order_Shipped_v2"),
    ],
)
def test_the_event_name_becomes_a_type_in_postscripts_charset_deterministically(name: str, expected: str) -> None:
    assert event_type(name) == event_type(name) == expected
    assert build(dataclasses.replace(REVIEW_REQUEST, name=name)).json["type"] == expected


def test_a_name_with_no_accepted_character_falls_back_to_the_canonical_type() -> None:
    assert build(dataclasses.replace(REVIEW_REQUEST, name="★ — ★")).json["type"] == "review_request"


def test_the_time_is_utc_in_postscripts_own_format_and_the_action_id_is_the_external_id() -> None:
    paris = timezone(timedelta(hours=2))
    event = dataclasses.replace(REVIEW_REQUEST, occurred_at=datetime(2026, 3, 14, 17, 0, 0, 250000, tzinfo=paris))
    body = build(event).json
    assert body["occurred_at"] == "2026-03-14 15:00:00.250000"
    assert datetime.strptime(body["occurred_at"], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC) == event.occurred_at
    assert body["external_id"] == REVIEW_REQUEST.id


def test_properties_are_flat_with_the_first_product_and_the_item_count_instead_of_the_list() -> None:
    assert build().json["properties"] == {
        "store": "Acme",
        "trigger": "order.fulfilled",
        "flow": "Post-purchase review request",
        "order_id": "1001",
        "item_count": 2,
        "product_id": "p-1",
        "product_name": "Linen Shirt",
        "product_url": "https://acme.example.com/products/linen-shirt",
        "product_image_url": "https://cdn.acme.example.com/linen-shirt.jpg",
    }


def test_a_review_is_flattened_into_review_fields() -> None:
    properties = build(REVIEW_SUBMITTED).json["properties"]
    assert properties["review_rating"] == 5 and properties["review_title"] == "Lovely"
    assert properties["product_id"] == "p-1"
    assert not any(isinstance(value, dict | list) for value in properties.values())


def test_nested_test_properties_are_flattened_and_nulls_left_out() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, properties={"test": True, "box": {"size": {"cm": 3}}, "note": None})
    assert build(event).json["properties"] == {"test": True, "box_size_cm": 3}


def test_phone_and_email_are_sent_and_an_external_id_alone_is_skipped_as_missing_identity() -> None:
    body = build().json
    assert (body["phone"], body["email"]) == ("+14155550100", "ada@example.com")
    customer = dataclasses.replace(REVIEW_REQUEST.customer, email=None, phone=None)
    with pytest.raises(SkipEvent) as skipped:
        build(dataclasses.replace(REVIEW_REQUEST, customer=customer))
    assert skipped.value.code == "missing_identity"


def test_it_declares_postscripts_limits() -> None:
    capabilities = PostscriptConnector.capabilities
    assert capabilities.rate_limit_per_second == 15
    assert capabilities.dedupe_field == "external_id"
    assert capabilities.identities == ("phone", "email")


def test_a_base_url_override_points_every_call_at_that_server() -> None:
    assert (
        build(base_url="https://staging.postscript.example").url == "https://staging.postscript.example/api/v2/events"
    )
    assert PostscriptSettings().load({}) == {"base_url": "https://api.postscript.io"}


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        ({"api_key": "pk_0123456789abcdef"}, "api_key"),
        ({"api_key": "sk_partner_0123456789abcdef"}, "shop_token"),
        ({"api_key": "sk_partner_0123456789abcdef", "shop_token": "pk_shop"}, "shop_token"),
    ],
)
def test_keys_that_cannot_work_are_refused_before_any_call(credentials: dict[str, str], field: str) -> None:
    with pytest.raises(ma.ValidationError) as refused:
        PostscriptCredentials().load(credentials)
    assert field in refused.value.messages
    assert PostscriptCredentials().load(PARTNER) == PARTNER


@responses.activate
def test_a_good_key_verifies_through_the_me_endpoint() -> None:
    me = responses.get(ME, json={"resource_id": "shop_1", "resource_name": "Acme", "resource_type": "shop"})
    PostscriptConnector().verify({**SETTINGS, **PARTNER}, HttpClient())
    sent = me.calls[0].request.headers
    assert sent["Authorization"] == f"Bearer {PARTNER['api_key']}"
    assert sent["X-Postscript-Shop-Token"] == PARTNER["shop_token"]


@responses.activate
@pytest.mark.parametrize("status", [401, 403])
def test_a_wrong_key_fails_verification_naming_the_field(status: int) -> None:
    responses.get(ME, status=status, json={"error_code": 1001, "error_message": "Invalid API key", "success": False})
    with pytest.raises(ConnectorError) as failed:
        PostscriptConnector().verify(SETTINGS, HttpClient())
    assert failed.value.credentials and failed.value.field == "api_key"
    assert "rejected the private API key" in failed.value.message and "Invalid API key" in failed.value.message
    assert KEY not in failed.value.message


@responses.activate
def test_a_rate_limited_key_check_fails_verification_without_blaming_the_key() -> None:
    responses.get(ME, status=429, json=RATE_LIMITED)
    with pytest.raises(ConnectorError) as failed:
        PostscriptConnector().verify(SETTINGS, HttpClient())
    assert not failed.value.credentials and "Rate limit exceeded" in failed.value.message


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (202, {}, {"event_ids": ["1234-abcd-5678"]}, OutcomeKind.DELIVERED, None),
        (400, {}, {}, OutcomeKind.PERMANENT, None),
        (400, {}, {"errors": [{"msg": "field required", "type": "value_error.missing"}]}, OutcomeKind.PERMANENT, None),
        (
            401,
            {},
            {"error_code": 1001, "error_message": "Unauthorized", "success": False},
            OutcomeKind.CREDENTIALS,
            None,
        ),
        (403, {}, {"error_code": 1002, "error_message": "Forbidden", "success": False}, OutcomeKind.CREDENTIALS, None),
        (404, {}, {}, OutcomeKind.PERMANENT, None),
        (429, {}, RATE_LIMITED, OutcomeKind.RATE_LIMITED, None),  # what Postscript sends: no header at all
        (429, {"Retry-After": "2"}, RATE_LIMITED, OutcomeKind.RATE_LIMITED, 2),  # honoured should it ever come
        (500, {}, "", OutcomeKind.RETRY, None),
        (502, {}, "", OutcomeKind.RETRY, None),
        (503, {}, "", OutcomeKind.RETRY, None),
    ],
)
def test_answers_are_classified_with_postscripts_error_bodies(
    status: int, headers: dict[str, str], body: Any, kind: OutcomeKind, retry_after: float | None
) -> None:
    outcome = PostscriptConnector().classify(answer(status, body, headers))
    assert (outcome.kind, outcome.retry_after) == (kind, retry_after)


def test_the_reason_is_postscripts_error_message_and_code() -> None:
    reason = PostscriptConnector().classify(answer(429, RATE_LIMITED)).reason
    assert reason == "HTTP 429: Rate limit exceeded (error_code 3002)"
    body = {"errors": [{"msg": "field required", "type": "value_error.missing", "ctx": {}, "log": ""}]}
    assert PostscriptConnector().classify(answer(400, body)).reason == "HTTP 400: field required"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TransportError("timeout", "timed out talking to api.postscript.io"), OutcomeKind.RETRY),
        (BlockedDestination("destination staging.example is a private or reserved address"), OutcomeKind.PERMANENT),
    ],
)
def test_timeouts_retry_and_a_refused_destination_is_final(error: Exception, kind: OutcomeKind) -> None:
    assert PostscriptConnector().classify(None, error).kind == kind


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_202() -> None:
    request = build()
    responses.post(
        "https://api.postscript.io/api/v2/events",
        status=202,
        json={"event_ids": ["1234-abcd-5678"]},
        match=[responses.matchers.json_params_matcher(request.json)],
    )
    assert PostscriptConnector().classify(HttpClient().send(request)).kind == OutcomeKind.DELIVERED
