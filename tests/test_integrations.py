"""Connecting apps: credentials verified on connect through the connector, plug-ins via entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest
import requests
import responses
from acme_tidings.connector import BASE
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from connectors import registry
from hub.cli import main
from hub.models import Integration
from hub.runtime import Runtime
from tests.conftest import Api, make_tenant


@pytest.fixture(autouse=True)
def acme_crm_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    entry = EntryPoint("acme_crm", "acme_tidings.connector:AcmeCrmConnector", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == registry.ENTRY_POINT_GROUP else [])
    registry.reset()
    yield
    registry.reset()


def count(rt: Runtime) -> int:
    with rt.db.session() as session:
        return session.scalar(select(func.count()).select_from(Integration)) or 0


def test_a_connector_from_an_entry_point_is_listed_beside_the_built_ins() -> None:
    assert list(registry.available()) == [
        "acme_crm",
        "attentive",
        "braze",
        "customerio",
        "iterable",
        "klaviyo",
        "omnisend",
        "postscript",
        "sandbox",
        "webhook",
    ]
    output = CliRunner().invoke(main, ["connectors", "list"]).output
    assert "acme_crm" in output and "Acme CRM" in output


@responses.activate
def test_credentials_are_verified_on_connect(api: Api, rt: Runtime) -> None:
    me = responses.get(f"{BASE}/me", json={"id": "acct_1"})
    answer = api.post("/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-good-123456"}})
    assert answer.status_code == 201, answer.json
    assert me.calls[0].request.headers["Authorization"] == "Bearer key-good-123456"
    assert answer.json["credentials"] == {"api_key": "••••3456"}


@responses.activate
def test_a_rejected_key_is_a_422_naming_the_field_and_nothing_is_stored(api: Api, rt: Runtime) -> None:
    responses.get(f"{BASE}/me", status=401)
    answer = api.post("/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-bad-0000000"}})
    assert answer.status_code == 422
    assert answer.json["error"]["code"] == "verification_failed"
    assert answer.json["error"]["fields"] == {"credentials.api_key": ["Acme CRM rejected the API key"]}
    assert "key-bad" not in answer.get_data(as_text=True)
    assert count(rt) == 0


@responses.activate
def test_an_unreachable_platform_is_a_422_and_nothing_is_stored(api: Api, rt: Runtime) -> None:
    responses.get(f"{BASE}/me", body=requests.ConnectionError("refused"))
    answer = api.post("/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-good-123456"}})
    assert answer.status_code == 422 and "Could not reach Acme CRM" in answer.json["error"]["message"]
    assert count(rt) == 0


@responses.activate
def test_new_credentials_are_verified_and_a_rejected_change_keeps_the_old_ones(api: Api, rt: Runtime) -> None:
    responses.get(f"{BASE}/me", json={})
    api.post("/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-good-123456"}})
    responses.replace(responses.GET, f"{BASE}/me", status=403)
    answer = api.patch("/api/v1/integrations/acme_crm", json={"credentials": {"api_key": "key-bad-0000000"}})
    assert answer.status_code == 422
    with rt.db.session() as session:
        stored = rt.box.decrypt(session.scalars(select(Integration.credentials)).one())
    assert stored == {"api_key": "key-good-123456"}


@responses.activate
def test_a_base_url_override_points_the_connector_at_a_staging_server(api: Api, rt: Runtime) -> None:
    responses.get("https://staging.acme-crm.example/me", json={})
    answer = api.post(
        "/api/v1/integrations",
        json={
            "app": "acme_crm",
            "credentials": {"api_key": "key-good-123456"},
            "settings": {"base_url": "https://staging.acme-crm.example"},
        },
    )
    assert answer.status_code == 201 and answer.json["settings"]["base_url"] == "https://staging.acme-crm.example"


# -- the platform's own limit on checking credentials ------------------------------------------------------------

KLAVIYO_ACCOUNTS = "https://a.klaviyo.com/api/accounts"


def connect_klaviyo(api: Api, key: str) -> Any:
    return api.post("/api/v1/integrations", json={"app": "klaviyo", "credentials": {"api_key": key}})


@responses.activate
def test_a_second_klaviyo_key_check_within_its_limit_is_a_429_that_never_reaches_klaviyo(api: Api, rt: Runtime) -> None:
    accounts = responses.get(KLAVIYO_ACCOUNTS, status=401, json={"errors": [{"detail": "Incorrect authentication"}]})
    first = connect_klaviyo(api, "pk_wrong_0123456789abcdef")
    assert first.status_code == 422 and first.json["error"]["code"] == "verification_failed"

    again = connect_klaviyo(api, "pk_wrong_0123456789abcdef")
    assert again.status_code == 429, again.json
    assert again.json["error"]["code"] == "rate_limited"
    assert "Klaviyo allows its credentials to be checked once every 4 seconds" in again.json["error"]["message"]
    assert 1 <= int(again.headers["Retry-After"]) <= 4
    assert accounts.call_count == 1  # only the first check went out
    assert "pk_wrong" not in again.get_data(as_text=True) and count(rt) == 0
    assert not any("pk_wrong" in key.decode() for key in rt.redis.keys("*"))  # buckets are named by a keyed hash


@responses.activate
def test_a_new_key_for_the_same_store_waits_too_and_so_does_the_same_key_from_another_store(
    app: Flask, api: Api, rt: Runtime
) -> None:
    accounts = responses.get(KLAVIYO_ACCOUNTS, json={"data": [{"type": "account", "id": "AbC123"}]})
    assert connect_klaviyo(api, "pk_first_0123456789abcdef").status_code == 201
    changed = api.patch("/api/v1/integrations/klaviyo", json={"credentials": {"api_key": "pk_other_0123456789abcdef"}})
    assert changed.status_code == 429  # Klaviyo counts per account, and one store's keys share one

    other = Api(app.test_client(), make_tenant(rt, "Other"))
    assert connect_klaviyo(other, "pk_first_0123456789abcdef").status_code == 429  # one account, two stores
    assert connect_klaviyo(other, "pk_third_0123456789abcdef").status_code == 201
    assert accounts.call_count == 2


@responses.activate
def test_a_connector_without_a_declared_key_check_limit_checks_every_time(api: Api) -> None:
    me = responses.get(f"{BASE}/me", status=401)
    for _ in range(3):
        answer = api.post("/api/v1/integrations", json={"app": "acme_crm", "credentials": {"api_key": "key-bad-0"}})
        assert answer.status_code == 422
    assert me.call_count == 3
