"""Braze: /users/track on the instance's REST endpoint, one identifier per event, non-fatal errors inside a 201."""

from __future__ import annotations

import dataclasses
from typing import Any

import marshmallow as ma
import pytest
import responses

from connectors.base import OutcomeKind, SkipEvent
from connectors.braze import BrazeConnector, BrazeSettings
from connectors.http import HttpClient
from connectors.kit import ConnectorContract
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer

KEY = "00000000-0000-4000-8000-0123456789ab"
SETTINGS = {"api_key": KEY, "instance": "US-03", "base_url": None}
TRACK = "https://rest.iad-03.braze.com/users/track"


class TestBrazeContract(ConnectorContract):
    connector_class = BrazeConnector
    sample_settings = BrazeConnector.example_settings
    sample_event = REVIEW_REQUEST
    golden_name = "braze"


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return BrazeConnector().build_request(event, {**SETTINGS, **settings})


def sent_event(event: Any = REVIEW_REQUEST) -> dict[str, Any]:
    events = build(event).json["events"]
    assert len(events) == 1
    return events[0]


def with_customer(**changes: Any) -> Any:
    return dataclasses.replace(REVIEW_REQUEST, customer=dataclasses.replace(REVIEW_REQUEST.customer, **changes))


def test_the_event_is_posted_to_the_instances_users_track_with_a_bearer_key() -> None:
    request = build()
    assert request.method == "POST" and request.url == TRACK
    assert request.headers == {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert request.secrets == (KEY,)
    assert set(request.json) == {"events"}


def test_the_event_has_name_iso_time_and_properties() -> None:
    event = sent_event(REVIEW_SUBMITTED)
    assert event["name"] == "Acme - Review Submitted"
    assert event["time"] == "2026-03-20T09:30:15Z"
    assert event["properties"]["review_rating"] == 5 and event["properties"]["review"]["body"] == "Soft and cool."


def test_properties_carry_the_order_items_and_first_product_flat() -> None:
    properties = sent_event()["properties"]
    assert properties["order_id"] == "1001" and properties["items"] == REVIEW_REQUEST.properties["items"]
    assert properties["product_name"] == "Linen Shirt" and properties["product_image_url"].endswith(".jpg")


def test_a_property_key_starting_with_a_dollar_loses_it() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, properties={"$price": "9"})
    assert sent_event(event)["properties"] == {"price": "9"}


@pytest.mark.parametrize(
    ("changes", "identity"),
    [
        ({}, {"external_id": "cus_42"}),
        ({"external_id": None}, {"email": "ada@example.com"}),
        ({"external_id": None, "email": None}, {"phone": "+14155550100"}),
    ],
    ids=["external-id-first", "then-email", "then-phone"],
)
def test_exactly_one_identifier_is_sent_the_strongest_the_customer_has(
    changes: dict[str, Any], identity: dict[str, str]
) -> None:
    event = sent_event(with_customer(**changes))
    assert {k: event[k] for k in ("external_id", "email", "phone") if k in event} == identity


def test_a_customer_with_only_a_phone_that_is_not_e164_is_skipped() -> None:
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(external_id=None, email=None, phone="415 555 0100"))
    assert skipped.value.code == "missing_identity"


@pytest.mark.parametrize(
    ("instance", "url"),
    [
        ("US-01", "https://rest.iad-01.braze.com/users/track"),
        ("us-08", "https://rest.iad-08.braze.com/users/track"),
        ("EU-01", "https://rest.fra-01.braze.eu/users/track"),
        ("EU-02", "https://rest.fra-02.braze.eu/users/track"),
    ],
)
def test_the_instance_picks_its_rest_endpoint(instance: str, url: str) -> None:
    settings = BrazeSettings().load({"instance": instance})
    assert build(**settings).url == url


def test_a_rest_endpoint_url_serves_instances_outside_the_table() -> None:
    settings = BrazeSettings().load({"base_url": "https://rest.iad-07.braze.com/"})
    assert build(**settings).url == "https://rest.iad-07.braze.com/users/track"


def test_settings_need_an_instance_or_a_rest_endpoint_and_refuse_an_unknown_instance() -> None:
    with pytest.raises(ma.ValidationError) as refused:
        BrazeSettings().load({})
    assert "instance" in refused.value.messages
    with pytest.raises(ma.ValidationError):
        BrazeSettings().load({"instance": "MARS-01"})


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (201, {}, {"message": "success", "events_processed": 1}, OutcomeKind.DELIVERED, None),
        (202, {}, {"message": "queued"}, OutcomeKind.DELIVERED, None),
        (400, {}, {"message": "Invalid 'time' field", "errors": []}, OutcomeKind.PERMANENT, None),
        (401, {}, {"message": "Invalid API key: ..."}, OutcomeKind.CREDENTIALS, None),
        (403, {}, {"message": "Access denied"}, OutcomeKind.CREDENTIALS, None),
        (404, {}, {"message": "Invalid URL"}, OutcomeKind.PERMANENT, None),
        (429, {"Retry-After": "3"}, {"message": "Rate limit exceeded"}, OutcomeKind.RATE_LIMITED, 3),
        (429, {"X-RateLimit-Remaining": "0"}, {"message": "Rate limit exceeded"}, OutcomeKind.RATE_LIMITED, None),
        (500, {}, {"message": "Internal server error"}, OutcomeKind.RETRY, None),
    ],
)
def test_answers_are_classified_by_status(
    status: int, headers: dict[str, str], body: Any, kind: str, retry_after: float | None
) -> None:
    outcome = BrazeConnector().classify(answer(status, body, headers))
    assert outcome.kind == kind and outcome.retry_after == retry_after


def test_a_success_that_lists_a_non_fatal_error_means_the_event_was_not_recorded() -> None:
    body = {
        "message": "success",
        "errors": [{"type": "'time' must be a valid time", "input_array": "events", "index": 0}],
    }
    outcome = BrazeConnector().classify(answer(201, body))
    assert outcome.kind == OutcomeKind.PERMANENT
    assert outcome.reason == "HTTP 201: event not recorded: 'time' must be a valid time"


def test_the_reason_is_brazes_fatal_message() -> None:
    assert BrazeConnector().classify(answer(400, {"message": "Bad payload"})).reason == "HTTP 400: Bad payload"


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_201() -> None:
    request = build()
    posted = responses.post(
        TRACK, status=201, json={"message": "success"}, match=[responses.matchers.json_params_matcher(request.json)]
    )
    assert BrazeConnector().classify(HttpClient().send(request)).kind == OutcomeKind.DELIVERED
    assert posted.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def test_verify_calls_nothing_because_braze_has_no_key_check_endpoint() -> None:
    with responses.RequestsMock() as mock:
        BrazeConnector().verify(SETTINGS, HttpClient())
        assert not mock.calls


def test_it_declares_the_published_rate_and_no_dedupe_field() -> None:
    assert BrazeConnector.capabilities.rate_limit_per_second == 1000
    assert BrazeConnector.capabilities.dedupe_field is None
