"""Connecting apps: credentials verified on connect through the connector, plug-ins via entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest
import requests
import responses
from acme_tidings.connector import BASE
from click.testing import CliRunner
from sqlalchemy import func, select

from connectors import registry
from hub.cli import main
from hub.models import Integration
from hub.runtime import Runtime
from tests.conftest import Api


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
