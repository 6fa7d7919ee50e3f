"""Customer.io Track API: v1 Track Customer Event with Basic auth, a ULID per action, US/EU regions."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest
import responses

from connectors.base import ConnectorError, OutcomeKind, SkipEvent
from connectors.customerio import CROCKFORD, CustomerioConnector, CustomerioSettings, ulid_for
from connectors.http import HttpClient
from connectors.kit import ConnectorContract
from tests.platforms.conftest import REVIEW_REQUEST, REVIEW_SUBMITTED, answer

SITE_ID = "site_0123456789abcdef"
KEY = "track_0123456789abcdef0123"
SETTINGS = {"site_id": SITE_ID, "api_key": KEY, "region": "us", "base_url": None, "identify_by": "email"}
BASIC = "Basic " + base64.b64encode(f"{SITE_ID}:{KEY}".encode()).decode()
US = "https://track.customer.io"
EU = "https://track-eu.customer.io"


class TestCustomerioContract(ConnectorContract):
    connector_class = CustomerioConnector
    sample_settings = CustomerioConnector.example_settings
    sample_event = REVIEW_REQUEST
    golden_name = "customerio"


def build(event: Any = REVIEW_REQUEST, **settings: Any) -> Any:
    return CustomerioConnector().build_request(event, {**SETTINGS, **settings})


def with_customer(**changes: Any) -> Any:
    return dataclasses.replace(REVIEW_REQUEST, customer=dataclasses.replace(REVIEW_REQUEST.customer, **changes))


def test_the_event_is_posted_under_the_persons_email_with_basic_auth() -> None:
    request = build()
    assert request.method == "POST"
    assert request.url == f"{US}/api/v1/customers/ada%40example.com/events"
    assert request.headers["Authorization"] == BASIC
    assert request.headers["Content-Type"] == "application/json"
    assert {SITE_ID, KEY} <= set(request.secrets)


def test_a_workspace_that_identifies_by_id_gets_the_external_id_in_the_path() -> None:
    assert build(identify_by="id").url == f"{US}/api/v1/customers/cus_42/events"


def test_an_identifier_is_escaped_in_the_path() -> None:
    assert build(with_customer(external_id="a/b c"), identify_by="id").url.endswith("/customers/a%2Fb%20c/events")


@pytest.mark.parametrize(
    ("identify_by", "changes"), [("email", {"email": None}), ("id", {"external_id": None})], ids=["email", "id"]
)
def test_a_customer_without_the_workspaces_identifier_is_skipped(identify_by: str, changes: dict[str, Any]) -> None:
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(**changes), identify_by=identify_by)
    assert skipped.value.code == "missing_identity"


def test_a_phone_alone_is_never_used_because_v1_takes_no_phone_in_the_path() -> None:
    with pytest.raises(SkipEvent) as skipped:
        build(with_customer(email=None, external_id=None))
    assert skipped.value.code == "missing_identity"


def test_the_body_has_name_type_unix_seconds_and_data() -> None:
    body = build(REVIEW_SUBMITTED).json
    assert body["name"] == "Acme - Review Submitted" and body["type"] == "event"
    assert body["timestamp"] == 1773999015  # 2026-03-20T09:30:15.25Z, whole seconds
    assert isinstance(body["timestamp"], int)
    assert body["data"]["review_rating"] == 5 and body["data"]["review"]["title"] == "Lovely"


def test_the_dedupe_id_is_a_ulid_that_is_stable_for_the_action() -> None:
    body = build().json
    assert len(body["id"]) == 26 and set(body["id"]) <= set(CROCKFORD) and body["id"][0] <= "7"
    assert body["id"] == build().json["id"] == ulid_for(REVIEW_REQUEST.id, 1773500400000)
    assert body["id"] != build(dataclasses.replace(REVIEW_REQUEST, id="another")).json["id"]


def test_the_ulid_time_part_is_the_event_time_in_milliseconds() -> None:
    ulid = ulid_for("x", 1773500400000)
    millis = 0
    for char in ulid[:10]:
        millis = millis * 32 + CROCKFORD.index(char)
    assert millis == 1773500400000


def test_data_carries_the_order_the_items_and_the_first_product_flat() -> None:
    data = build().json["data"]
    assert data["order_id"] == "1001" and data["items"] == REVIEW_REQUEST.properties["items"]
    assert data["product_name"] == "Linen Shirt" and data["product_url"].endswith("/linen-shirt")


def test_a_long_name_is_cut_to_100_bytes_without_breaking_a_character() -> None:
    name = build(dataclasses.replace(REVIEW_REQUEST, name="é" * 80)).json["name"]
    assert name == "é" * 50


def test_event_data_over_100000_bytes_is_skipped() -> None:
    event = dataclasses.replace(REVIEW_REQUEST, properties={"blob": "x" * 100_001})
    with pytest.raises(SkipEvent) as skipped:
        build(event)
    assert skipped.value.code == "payload_too_large"


def test_the_eu_region_and_a_base_url_override_change_the_host() -> None:
    assert build(region="eu").url.startswith(f"{EU}/api/v1/customers/")
    assert build(base_url="https://cio.staging.example/").url.startswith("https://cio.staging.example/api/v1/")
    assert CustomerioSettings().load({}) == {"region": "us", "base_url": None, "identify_by": "email"}


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "retry_after"),
    [
        (200, {}, {}, OutcomeKind.DELIVERED, None),
        (400, {}, {"meta": {"errors": ["name is required"]}}, OutcomeKind.PERMANENT, None),
        (401, {}, {"meta": {"error": "Unauthorized request"}}, OutcomeKind.CREDENTIALS, None),
        (429, {"Retry-After": "3"}, "", OutcomeKind.RATE_LIMITED, 3),
        (429, {}, "", OutcomeKind.RATE_LIMITED, None),
        (503, {}, "", OutcomeKind.RETRY, None),
    ],
)
def test_answers_are_classified_by_status(
    status: int, headers: dict[str, str], body: Any, kind: str, retry_after: float | None
) -> None:
    outcome = CustomerioConnector().classify(answer(status, body, headers))
    assert outcome.kind == kind and outcome.retry_after == retry_after


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"meta": {"errors": ["name is required", "timestamp is invalid"]}}, "name is required; timestamp is invalid"),
        ({"meta": {"error": "event data too large"}}, "event data too large"),
    ],
)
def test_the_reason_is_customerios_meta_errors(body: Any, reason: str) -> None:
    assert CustomerioConnector().classify(answer(400, body)).reason == f"HTTP 400: {reason}"


@responses.activate
def test_good_keys_verify_through_get_region_with_basic_auth() -> None:
    region = responses.get(f"{US}/api/v1/accounts/region", json={"url": US, "region": "us", "environment_id": 1})
    CustomerioConnector().verify(SETTINGS, HttpClient())
    assert region.calls[0].request.headers["Authorization"] == BASIC


@responses.activate
def test_wrong_keys_fail_verification_naming_the_field() -> None:
    responses.get(f"{US}/api/v1/accounts/region", status=401, json={"meta": {"error": "Unauthorized request"}})
    with pytest.raises(ConnectorError) as failed:
        CustomerioConnector().verify(SETTINGS, HttpClient())
    assert failed.value.credentials and failed.value.field == "api_key"
    assert KEY not in failed.value.message and SITE_ID not in failed.value.message


@responses.activate
def test_an_eu_account_configured_as_us_fails_verification_on_the_region_field() -> None:
    responses.get(f"{US}/api/v1/accounts/region", json={"url": EU, "region": "eu", "environment_id": 1})
    with pytest.raises(ConnectorError) as failed:
        CustomerioConnector().verify(SETTINGS, HttpClient())
    assert failed.value.field == "region" and not failed.value.credentials


@responses.activate
def test_a_busy_customerio_fails_verification_without_blaming_the_keys() -> None:
    responses.get(f"{EU}/api/v1/accounts/region", status=503, body="")
    with pytest.raises(ConnectorError) as failed:
        CustomerioConnector().verify({**SETTINGS, "region": "eu"}, HttpClient())
    assert not failed.value.credentials and failed.value.field is None


@responses.activate
def test_a_built_request_sent_through_the_http_client_is_delivered_on_200() -> None:
    request = build()
    responses.post(request.url, json={}, match=[responses.matchers.json_params_matcher(request.json)])
    assert CustomerioConnector().classify(HttpClient().send(request)).kind == OutcomeKind.DELIVERED


def test_it_declares_the_rate_the_dedupe_field_and_the_72_hour_window() -> None:
    capabilities = CustomerioConnector.capabilities
    assert capabilities.rate_limit_per_second == 100 and capabilities.dedupe_field == "id"
    assert capabilities.staleness_seconds == 72 * 3600
