"""The webhook connector: Standard Webhooks signatures over the exact bytes sent."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import marshmallow as ma
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connectors.base import Connector, Customer, SkipEvent
from connectors.http import HttpClient
from connectors.kit import FIXED_NOW, SAMPLE_EVENT
from connectors.webhook import WebhookConnector, WebhookCredentials, WebhookSettings
from tests.connectors.local_server import LocalServer
from tests.connectors.samples import WEBHOOK_SECRET, WEBHOOK_SETTINGS

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "webhook.json"


def test_the_signature_verifies_with_standard_webhooks_on_the_exact_bytes() -> None:
    request = WebhookConnector().build_request(SAMPLE_EVENT, WEBHOOK_SETTINGS)
    assert request.data is not None and request.json is None
    assert Webhook(WEBHOOK_SECRET).verify(request.data, dict(request.headers)) == json.loads(request.data)
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(request.data + b" ", dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another secret, 32 bytes long!!!").decode()).verify(
            request.data, dict(request.headers)
        )


def test_non_ascii_text_is_sent_as_utf8_and_still_verifies() -> None:
    event = dataclasses.replace(SAMPLE_EVENT, name="Café Zoë - Bewertung", properties={"note": "naïve ✓"})
    request = WebhookConnector().build_request(event, WEBHOOK_SETTINGS)
    assert request.data is not None and "Café Zoë".encode() in request.data
    assert Webhook(WEBHOOK_SECRET).verify(request.data, dict(request.headers))["name"] == event.name


def test_a_clock_in_another_time_zone_gives_the_same_timestamp_and_a_valid_signature() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    paris = now.astimezone(timezone(timedelta(hours=2)))
    in_utc = WebhookConnector(clock=lambda: now).build_request(SAMPLE_EVENT, WEBHOOK_SETTINGS)
    in_paris = WebhookConnector(clock=lambda: paris).build_request(SAMPLE_EVENT, WEBHOOK_SETTINGS)
    assert in_paris == in_utc
    assert in_paris.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert in_paris.data is not None
    Webhook(WEBHOOK_SECRET).verify(in_paris.data, dict(in_paris.headers))


def test_the_body_is_compact_json_in_the_golden_files_order() -> None:
    request = WebhookConnector(clock=lambda: FIXED_NOW).build_request(SAMPLE_EVENT, WEBHOOK_SETTINGS)
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert request.data == json.dumps(golden["body"], separators=(",", ":"), ensure_ascii=False).encode()
    assert list(golden["body"]) == ["id", "type", "name", "occurred_at", "test", "customer", "properties"]
    assert golden["headers"]["webhook-id"] == SAMPLE_EVENT.id
    assert golden["headers"]["webhook-timestamp"] == str(int(FIXED_NOW.timestamp()))
    assert golden["body"]["occurred_at"] == "2026-03-14T15:00:00Z"


def test_it_sends_only_the_customer_fields_it_has() -> None:
    event = dataclasses.replace(SAMPLE_EVENT, customer=Customer(phone="+14155550100"), test=True)
    request = WebhookConnector().build_request(event, WEBHOOK_SETTINGS)
    body = json.loads(request.data or b"")
    assert body["customer"] == {"phone": "+14155550100"}
    assert body["test"] is True


def test_an_event_without_email_phone_or_external_id_is_skipped() -> None:
    event = dataclasses.replace(SAMPLE_EVENT, customer=Customer(first_name="Ada", last_name="Lovelace"))
    with pytest.raises(SkipEvent) as skipped:
        WebhookConnector().build_request(event, WEBHOOK_SETTINGS)
    assert skipped.value.code == "missing_identity"


def test_the_signing_secret_is_listed_for_redaction() -> None:
    request = WebhookConnector().build_request(SAMPLE_EVENT, WEBHOOK_SETTINGS)
    assert request.secrets == (WEBHOOK_SECRET,)
    assert WEBHOOK_SECRET not in repr(request.headers)


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_",
        "whsec_" + base64.b64encode(b"only 8 b").decode(),  # too short
        "whsec_not base64 at all!!",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw===",
    ],
)
def test_a_malformed_signing_secret_is_refused(secret: str) -> None:
    with pytest.raises(ma.ValidationError) as caught:
        WebhookCredentials().load({"signing_secret": secret})
    assert "signing_secret" in caught.value.messages


def test_a_signing_secret_with_or_without_padding_is_accepted() -> None:
    padded = "whsec_" + base64.b64encode(b"sixteen bytes!!!!").decode()
    for secret in (WEBHOOK_SECRET, padded, padded.rstrip("=")):
        assert WebhookCredentials().load({"signing_secret": secret}) == {"signing_secret": secret}
        Webhook(secret)  # and standardwebhooks reads it


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/x", "hooks.example.com", "https://", ""])
def test_the_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ma.ValidationError):
        WebhookSettings().load({"url": url})


def test_webhooks_have_no_account_to_verify() -> None:
    assert WebhookConnector.verify is Connector.verify


def test_a_receiver_gets_the_signed_bytes_through_the_http_client(server: LocalServer) -> None:
    settings = {**WEBHOOK_SETTINGS, "url": f"{server.url}/hooks/tidings"}
    request = WebhookConnector().build_request(SAMPLE_EVENT, settings)
    response = HttpClient(allow_private=True).send(request)
    assert WebhookConnector().classify(response).kind == "delivered"
    (received,) = server.received
    headers = {k.lower(): v for k, v in received["headers"].items()}
    assert Webhook(WEBHOOK_SECRET).verify(received["body"], headers)["id"] == SAMPLE_EVENT.id
    assert headers["content-type"] == "application/json"
