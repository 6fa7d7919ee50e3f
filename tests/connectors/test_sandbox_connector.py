"""The sandbox connector: the wire protocol the hub's built-in test app serves."""

from __future__ import annotations

import dataclasses

import marshmallow as ma
import pytest
import requests
import responses
from responses import matchers

from connectors.base import ConnectorError, Customer, OutcomeKind, SkipEvent
from connectors.http import HttpClient
from connectors.kit import SAMPLE_EVENT, fake_response
from connectors.sandbox import SandboxConnector, SandboxCredentials, SandboxSettings
from tests.connectors.samples import SANDBOX_KEY, SANDBOX_SETTINGS

BASE = SANDBOX_SETTINGS["base_url"]


@pytest.fixture
def http() -> HttpClient:
    return HttpClient(trusted_origins=["http://127.0.0.1:5000"])  # as the hub builds it


def test_it_posts_the_event_with_a_bearer_key_and_the_idempotency_key() -> None:
    request = SandboxConnector().build_request(SAMPLE_EVENT, SANDBOX_SETTINGS)
    assert (request.method, request.url) == ("POST", f"{BASE}/events")
    assert request.headers == {
        "Authorization": f"Bearer {SANDBOX_KEY}",
        "Idempotency-Key": SAMPLE_EVENT.id,
        "Content-Type": "application/json",
    }
    assert request.json["id"] == SAMPLE_EVENT.id and request.json["occurred_at"] == "2026-03-14T15:00:00Z"
    assert request.secrets == (SANDBOX_KEY,)


def test_a_trailing_slash_on_the_base_url_does_not_double() -> None:
    request = SandboxConnector().build_request(SAMPLE_EVENT, {**SANDBOX_SETTINGS, "base_url": BASE + "/"})
    assert request.url == f"{BASE}/events"


def test_an_event_without_an_identity_is_skipped() -> None:
    event = dataclasses.replace(SAMPLE_EVENT, customer=Customer(first_name="Ada"))
    with pytest.raises(SkipEvent) as skipped:
        SandboxConnector().build_request(event, SANDBOX_SETTINGS)
    assert skipped.value.code == "missing_identity"


def test_its_settings_take_a_loopback_url_and_its_credentials_need_a_key() -> None:
    assert SandboxSettings().load({"base_url": "http://127.0.0.1:8080/sandbox/7"})["base_url"].endswith("/7")
    assert SandboxSettings().load({"base_url": "http://localhost:5000/sandbox/7"})
    with pytest.raises(ma.ValidationError):
        SandboxSettings().load({"base_url": "ftp://127.0.0.1/sandbox/7"})
    with pytest.raises(ma.ValidationError) as caught:
        SandboxCredentials().load({})
    assert "api_key" in caught.value.messages


@responses.activate
def test_verify_accepts_a_key_the_sandbox_knows(http: HttpClient) -> None:
    responses.get(
        f"{BASE}/account",
        json={"account": "sandbox"},
        match=[matchers.header_matcher({"Authorization": f"Bearer {SANDBOX_KEY}"})],
    )
    SandboxConnector().verify(SANDBOX_SETTINGS, http)  # no ConnectorError
    assert len(responses.calls) == 1


@pytest.mark.parametrize("status", [401, 403])
@responses.activate
def test_verify_reports_a_rejected_key_on_the_api_key_field(http: HttpClient, status: int) -> None:
    responses.get(f"{BASE}/account", status=status, json={"error": {"message": f"invalid key {SANDBOX_KEY}"}})
    with pytest.raises(ConnectorError) as caught:
        SandboxConnector().verify(SANDBOX_SETTINGS, http)
    assert (caught.value.field, caught.value.credentials) == ("api_key", True)
    assert str(caught.value) == "the sandbox rejected the API key"


@responses.activate
def test_verify_reports_any_other_answer_with_its_status(http: HttpClient) -> None:
    responses.get(f"{BASE}/account", status=500, body="boom")
    with pytest.raises(ConnectorError) as caught:
        SandboxConnector().verify(SANDBOX_SETTINGS, http)
    assert "500" in str(caught.value) and not caught.value.credentials


def test_it_prefers_the_sandboxs_own_error_message_as_the_reason() -> None:
    outcome = SandboxConnector().classify(fake_response(422, body={"error": {"message": "body must have a name"}}))
    assert outcome.kind == OutcomeKind.PERMANENT
    assert outcome.reason == "HTTP 422: body must have a name"


def test_it_retries_after_429_with_the_retry_after_it_was_given() -> None:
    answer = fake_response(429, {"Retry-After": "30"}, {"error": {"message": "sandbox answered 429 as configured"}})
    outcome = SandboxConnector().classify(answer)
    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.RATE_LIMITED, 30.0)
    assert "as configured" in outcome.reason


@pytest.mark.parametrize("body", [None, {"error": "flat"}, {"error": {"message": 5}}, ["x"]])
def test_an_answer_without_a_usable_message_keeps_the_default_reason(body: object) -> None:
    outcome = SandboxConnector().classify(fake_response(503, {"Retry-After": "2"}, body))
    assert outcome.kind == OutcomeKind.RETRY and outcome.retry_after == 2.0
    assert outcome.reason.startswith("HTTP 503")


def test_an_accepted_event_is_delivered() -> None:
    answer = fake_response(202, body={"status": "accepted", "id": SAMPLE_EVENT.id, "duplicate": False})
    assert SandboxConnector().classify(answer).kind == OutcomeKind.DELIVERED


@responses.activate
def test_a_delivery_goes_through_the_http_client_with_the_sandbox_wire_format(http: HttpClient) -> None:
    responses.post(
        f"{BASE}/events",
        status=202,
        json={"status": "accepted"},
        match=[
            matchers.header_matcher({"Idempotency-Key": SAMPLE_EVENT.id, "Authorization": f"Bearer {SANDBOX_KEY}"}),
            matchers.json_params_matcher({"name": SAMPLE_EVENT.name}, strict_match=False),
        ],
    )
    connector = SandboxConnector()
    response = http.send(connector.build_request(SAMPLE_EVENT, SANDBOX_SETTINGS))
    assert isinstance(response, requests.Response)
    assert connector.classify(response).kind == OutcomeKind.DELIVERED
