"""Omnisend: Send Customer Event with the pinned API version; problem+json errors; a UUID eventID per action."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import responses

from connectors.base import OutcomeKind, SkipEvent
from connectors.http import HttpClient
from connectors.kit import ConnectorContract
from connectors.omnisend import API_VERSION, OmnisendConnector, OmnisendSettings, event_uuid
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer

KEY = "omnisend_0123456789abcdef0123456789"
SETTINGS = {"api_key": KEY, "base_url": "https://api.omnisend.com", "origin": "api"}
EVENTS = "https://api.omnisend.com/api/events"


class TestOmnisendContract(ConnectorContract):
    connector_class = OmnisendConnector
    sample_settings = OmnisendConnector.example_settings
    sample_event = REVIEW_REQUEST
    golden_name = "omnisend"


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return OmnisendConnector().build_request(event, {**SETTINGS, **settings})


def with_customer(**changes: Any) -> Any:
    return dataclasses.replace(REVIEW_REQUEST, customer=dataclasses.replace(REVIEW_REQUEST.customer, **changes))


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, "errors": errors or []}


def test_the_request_carries_the_api_key_scheme_and_the_pinned_version() -> None:
    request = build()
    assert request.method == "POST" and request.url == EVENTS
    assert request.headers["Authorization"] == f"Omnisend-API-Key {KEY}"
    assert request.headers["Omnisend-Version"] == API_VERSION == "2026-03-15"
    assert request.headers["Content-Type"] == "application/json"
    assert request.secrets == (KEY,)


def test_the_body_is_a_custom_event_with_origin_and_no_event_version() -> None:
    body = build().json
    assert body["eventName"] == "Acme - Review Request" and body["origin"] == "api"
    assert "eventVersion" not in body
    assert body["eventTime"] == "2026-03-14T15:00:00Z"
    assert body["contact"] == {
        "email": "ada@example.com",
        "phone": "+14155550100",
        "firstName": "Ada",
        "lastName": "Lovelace",
    }


def test_the_event_id_is_a_stable_uuid_made_from_the_action_id() -> None:
    event_id = build().json["eventID"]
    assert uuid.UUID(event_id).version == 5
    assert event_id == event_uuid(REVIEW_REQUEST.id) == build().json["eventID"]
    assert event_id != event_uuid(REVIEW_SUBMITTED.id)


def test_an_app_with_its_own_origin_sends_it() -> None:
    assert build(origin="tidings").json["origin"] == "tidings"
    assert OmnisendSettings().load({}) == {"base_url": "https://api.omnisend.com", "origin": "api"}


def test_properties_carry_the_order_the_items_and_the_first_product_flat() -> None:
    properties = build().json["properties"]
    assert properties["order_id"] == "1001" and properties["items"] == REVIEW_REQUEST.properties["items"]
    assert properties["product_name"] == "Linen Shirt" and properties["product_id"] == "p-1"
    assert properties["product_image_url"] == "https://cdn.acme.example.com/linen-shirt.jpg"


def test_a_review_is_copied_to_flat_properties() -> None:
    properties = build(REVIEW_SUBMITTED).json["properties"]
    assert properties["review_rating"] == 5 and properties["review_title"] == "Lovely"
    assert build(REVIEW_SUBMITTED).json["eventTime"] == "2026-03-20T09:30:15Z"


def test_a_phone_alone_is_enough_and_an_external_id_alone_is_not() -> None:
    assert build(with_customer(email=None)).json["contact"]["phone"] == "+14155550100"
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(email=None, phone=None))
    assert skipped.value.code == "missing_identity"


@pytest.mark.parametrize("phone", ["(415) 555-0100", "+123456789012345"], ids=["not-e164", "over-15-chars"])
def test_a_phone_omnisend_would_refuse_is_left_out_and_alone_it_skips(phone: str) -> None:
    assert "phone" not in build(with_customer(phone=phone)).json["contact"]
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(email=None, phone=phone))
    assert skipped.value.code == "missing_identity"


def test_a_base_url_override_points_the_call_at_that_server() -> None:
    assert build(base_url="https://omnisend.staging.example/").url == "https://omnisend.staging.example/api/events"


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (202, {}, None, OutcomeKind.DELIVERED, None),
        (400, {}, problem(400, "Bad Request", "validation failed"), OutcomeKind.PERMANENT, None),
        (401, {}, problem(401, "Unauthorized", "invalid API key"), OutcomeKind.CREDENTIALS, None),
        (403, {}, problem(403, "Forbidden", "missing scope events.write"), OutcomeKind.CREDENTIALS, None),
        (410, {}, problem(410, "Gone", "API version retired"), OutcomeKind.PERMANENT, None),
        (
            429,
            {"X-Rate-Limit-Remaining": "0"},
            problem(429, "Too Many Requests", "slow down"),
            OutcomeKind.RATE_LIMITED,
            None,
        ),
        (429, {"Retry-After": "12"}, problem(429, "Too Many Requests", "slow down"), OutcomeKind.RATE_LIMITED, 12),
        (500, {}, "oops", OutcomeKind.RETRY, None),
    ],
)
def test_answers_are_classified_by_status(
    status: int, headers: dict[str, str], body: Any, kind: str, retry_after: float | None
) -> None:
    outcome = OmnisendConnector().classify(answer(status, body, headers))
    assert outcome.kind == kind and outcome.retry_after == retry_after


def test_the_reason_is_the_problem_title_detail_and_field_errors() -> None:
    body = problem(400, "Bad Request", "validation failed", [{"field": "contact.email", "code": "x", "message": "bad"}])
    assert OmnisendConnector().classify(answer(400, body)).reason == (
        "HTTP 400: Bad Request: validation failed; contact.email bad"
    )


def test_a_retired_version_says_so_in_the_reason() -> None:
    assert "may be retired" in OmnisendConnector().classify(answer(410, problem(410, "Gone", "retired"))).reason


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_202() -> None:
    request = build()
    posted = responses.post(EVENTS, status=202, match=[responses.matchers.json_params_matcher(request.json)])
    assert OmnisendConnector().classify(HttpClient().send(request)).kind == OutcomeKind.DELIVERED
    assert posted.calls[0].request.headers["Omnisend-Version"] == API_VERSION


def test_verify_calls_nothing_because_omnisend_documents_no_key_check() -> None:
    with responses.RequestsMock() as mock:
        OmnisendConnector().verify(SETTINGS, HttpClient())
        assert not mock.calls


def test_it_declares_the_published_rate_limit_and_the_dedupe_field() -> None:
    capabilities = OmnisendConnector.capabilities
    assert capabilities.rate_limit_per_second == pytest.approx(400 / 60)
    assert capabilities.dedupe_field == "eventID" and set(capabilities.identities) == {"email", "phone"}
