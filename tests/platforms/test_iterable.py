"""Iterable: Track Event with the Api-Key header, the action id as the event id, US/EU regions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import responses

from connectors.base import ConnectorError, OutcomeKind, SkipEvent
from connectors.http import HttpClient
from connectors.iterable import IterableConnector, IterableSettings
from connectors.kit import ConnectorContract
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer

KEY = "0123456789abcdef0123456789abcdef"
SETTINGS = {"api_key": KEY, "region": "us", "base_url": None}
US = "https://api.iterable.com"
EU = "https://api.eu.iterable.com"


class TestIterableContract(ConnectorContract):
    connector_class = IterableConnector
    sample_settings = IterableConnector.example_settings
    sample_event = REVIEW_REQUEST
    golden_name = "iterable"


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return IterableConnector().build_request(event, {**SETTINGS, **settings})


def with_customer(**changes: Any) -> Any:
    return dataclasses.replace(REVIEW_REQUEST, customer=dataclasses.replace(REVIEW_REQUEST.customer, **changes))


def iterable_error(code: str, msg: str) -> dict[str, Any]:
    return {"msg": msg, "code": code, "params": None}


def test_the_event_is_posted_to_track_with_the_api_key_header() -> None:
    request = build()
    assert request.method == "POST" and request.url == f"{US}/api/events/track"
    assert request.headers == {"Api-Key": KEY, "Content-Type": "application/json"}
    assert request.secrets == (KEY,)


def test_the_body_has_both_identifiers_the_action_id_and_unix_seconds() -> None:
    body = build(REVIEW_SUBMITTED).json
    assert body["email"] == "ada@example.com" and body["userId"] == "cus_42"
    assert body["eventName"] == "Acme - Review Submitted"
    assert body["id"] == REVIEW_SUBMITTED.id
    assert body["createdAt"] == 1773999015 and isinstance(body["createdAt"], int)


def test_data_fields_carry_the_order_items_first_product_and_review() -> None:
    fields = build().json["dataFields"]
    assert fields["order_id"] == "1001" and fields["items"] == REVIEW_REQUEST.properties["items"]
    assert fields["product_name"] == "Linen Shirt" and fields["product_id"] == "p-1"
    assert build(REVIEW_SUBMITTED).json["dataFields"]["review_rating"] == 5


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [({"email": None}, "userId", "email"), ({"external_id": None}, "email", "userId")],
    ids=["user-id-only", "email-only"],
)
def test_either_identifier_alone_is_enough(changes: dict[str, Any], present: str, absent: str) -> None:
    body = build(with_customer(**changes)).json
    assert present in body and absent not in body


def test_a_phone_alone_is_skipped_because_iterable_tracks_by_email_or_user_id() -> None:
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(email=None, external_id=None))
    assert skipped.value.code == "missing_identity"


def test_the_eu_region_and_a_base_url_override_change_the_host() -> None:
    assert build(region="eu").url == f"{EU}/api/events/track"
    assert (
        build(base_url="https://iterable.staging.example/").url == "https://iterable.staging.example/api/events/track"
    )
    assert IterableSettings().load({}) == {"region": "us", "base_url": None}


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (200, {}, {"msg": "", "code": "Success", "params": None}, OutcomeKind.DELIVERED, None),
        (400, {}, iterable_error("InvalidEmailAddressError", "Invalid email"), OutcomeKind.PERMANENT, None),
        (401, {}, iterable_error("BadApiKey", "Invalid API key"), OutcomeKind.CREDENTIALS, None),
        (429, {"Retry-After": "2"}, iterable_error("RateLimitExceeded", "Slow down"), OutcomeKind.RATE_LIMITED, 2),
        (429, {}, iterable_error("RateLimitExceeded", "Slow down"), OutcomeKind.RATE_LIMITED, None),
        (500, {}, iterable_error("GenericError", "Oops"), OutcomeKind.RETRY, None),
    ],
)
def test_answers_are_classified_by_status(
    status: int, headers: dict[str, str], body: Any, kind: str, retry_after: float | None
) -> None:
    outcome = IterableConnector().classify(answer(status, body, headers))
    assert outcome.kind == kind and outcome.retry_after == retry_after


def test_the_reason_is_iterables_code_and_message() -> None:
    reason = IterableConnector().classify(answer(400, iterable_error("InvalidEmailAddressError", "Bad email"))).reason
    assert reason == "HTTP 400: InvalidEmailAddressError: Bad email"


@responses.activate
def test_a_good_key_verifies_through_get_webhooks() -> None:
    webhooks = responses.get(f"{US}/api/webhooks", json={"webhooks": []})
    IterableConnector().verify(SETTINGS, HttpClient())
    assert webhooks.calls[0].request.headers["Api-Key"] == KEY


@responses.activate
def test_a_wrong_key_fails_verification_naming_the_field() -> None:
    responses.get(f"{EU}/api/webhooks", status=401, json=iterable_error("BadApiKey", "Invalid API key"))
    with pytest.raises(ConnectorError) as failed:
        IterableConnector().verify({**SETTINGS, "region": "eu"}, HttpClient())
    assert failed.value.credentials and failed.value.field == "api_key"
    assert "BadApiKey" in failed.value.message and KEY not in failed.value.message


@responses.activate
def test_a_busy_iterable_fails_verification_without_blaming_the_key() -> None:
    responses.get(f"{US}/api/webhooks", status=503, body="")
    with pytest.raises(ConnectorError) as failed:
        IterableConnector().verify(SETTINGS, HttpClient())
    assert not failed.value.credentials


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_200() -> None:
    request = build()
    posted = responses.post(
        request.url, json={"msg": "", "code": "Success"}, match=[responses.matchers.json_params_matcher(request.json)]
    )
    assert IterableConnector().classify(HttpClient().send(request)).kind == OutcomeKind.DELIVERED
    assert posted.calls[0].request.headers["Api-Key"] == KEY


def test_it_declares_the_id_as_dedupe_field_and_no_unverified_rate() -> None:
    assert IterableConnector.capabilities.dedupe_field == "id"
    assert IterableConnector.capabilities.rate_limit_per_second is None
