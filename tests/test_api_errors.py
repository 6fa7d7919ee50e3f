"""Bad input on every route gets one clear error shape, never a 500, and changes nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from hub.models import Action, Integration, Trigger
from hub.runtime import Runtime
from schemas.triggers import TriggerIn
from tests.conftest import Api

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VALID_TRIGGER = {"type": "review.submitted", "customer": {"email": "a@example.com"}, "review": {"rating": 5}}


def assert_error(answer: Any, status: int, *fields: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.get_data(as_text=True)
    error = answer.json["error"]
    assert error["status"] == status and error["code"] and error["message"]
    for field in fields:
        assert field in error.get("fields", {}), error
    return error  # type: ignore[no-any-return]


ROUTES = [
    ("post", "/api/v1/triggers"),
    ("get", "/api/v1/actions"),
    ("get", "/api/v1/actions/1"),
    ("get", "/api/v1/events"),
    ("get", "/api/v1/integrations"),
    ("post", "/api/v1/integrations"),
    ("get", "/api/v1/integrations/sandbox"),
    ("patch", "/api/v1/integrations/sandbox"),
    ("delete", "/api/v1/integrations/sandbox"),
    ("post", "/api/v1/integrations/sandbox/test-events"),
    ("post", "/api/v1/integrations/sandbox/samples"),
    ("get", "/api/v1/sandbox/requests"),
    ("get", "/api/v1/queue"),
    ("get", "/api/v1/incomplete"),
    ("post", "/api/v1/actions/1/send-now"),
    ("post", "/api/v1/actions/1/delay"),
    ("post", "/api/v1/actions/1/cancel"),
    ("post", "/api/v1/actions/1/restore"),
    ("post", "/api/v1/actions/1/replay"),
    ("get", "/api/v1/actions/1/audit"),
    ("get", "/api/v1/actions/1/explain"),
    ("get", "/api/v1/actions/export"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/stats"),
    ("post", "/api/v1/bulk-operations"),
    ("get", "/api/v1/bulk-operations"),
    ("post", "/api/v1/bulk-operations/upload"),
    ("get", "/api/v1/bulk-operations/1"),
    ("post", "/api/v1/bulk-operations/1/undo"),
    ("get", "/api/v1/customers"),
    ("get", "/api/v1/customers/1/timeline"),
    ("get", "/api/v1/suppressions"),
    ("post", "/api/v1/suppressions"),
    ("delete", "/api/v1/suppressions/1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer tdg_not-a-real-token", "Basic abc", "Bearer "])
def test_every_api_route_refuses_a_missing_or_wrong_token(
    app: Flask, tenant: Any, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = getattr(app.test_client(), method)(path, headers=headers, json={})
    assert_error(answer, 401)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["type", "customer"]),
        ({**VALID_TRIGGER, "type": "order.shipped"}, ["type"]),
        ({**VALID_TRIGGER, "customer": {"email": "not-an-email"}}, ["customer.email"]),
        ({**VALID_TRIGGER, "customer": {"phone": "555-1234"}}, ["customer.phone"]),
        ({**VALID_TRIGGER, "customer": {"first_name": "Ada"}}, ["customer"]),
        ({**VALID_TRIGGER, "occurred_at": "yesterday"}, ["occurred_at"]),
        ({**VALID_TRIGGER, "review": {"rating": 9}}, ["review.rating"]),
        ({"type": "order.fulfilled", "customer": {"email": "a@example.com"}}, ["order"]),
        ({"type": "review.submitted", "customer": {"email": "a@example.com"}}, ["review"]),
        (
            {
                "type": "order.fulfilled",
                "customer": {"email": "a@x.com"},
                "order": {"id": "1", "items": [{"name": ""}]},
            },
            ["order.items.0.product_id", "order.items.0.name"],
        ),
        ({**VALID_TRIGGER, "surprise": True}, ["surprise"]),
        ([1, 2], []),
        ("just a string", []),
    ],
)
def test_an_invalid_trigger_is_a_422_with_field_errors_and_stores_nothing(
    api: Api, rt: Runtime, body: Any, fields: list[str]
) -> None:
    assert_error(api.post("/api/v1/triggers", json=body), 422, *fields)
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Trigger)) == 0


def test_a_malformed_json_body_is_a_400(api: Api) -> None:
    answer = api.post("/api/v1/triggers", data="{not json", headers={"Content-Type": "application/json"})
    assert_error(answer, 400)


def test_an_overlong_idempotency_key_is_a_400(api: Api) -> None:
    assert_error(api.post("/api/v1/triggers", json=VALID_TRIGGER, headers={"Idempotency-Key": "k" * 201}), 400)


def test_an_unknown_app_is_a_422_naming_the_installed_ones(api: Api) -> None:
    error = assert_error(api.post("/api/v1/integrations", json={"app": "myspace"}), 422, "app")
    assert "webhook" in error["fields"]["app"][0]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"app": "webhook", "settings": {"url": "https://h.example.com"}}, ["credentials.signing_secret"]),
        (
            {"app": "webhook", "credentials": {"signing_secret": SECRET}, "settings": {"url": "ftp://x"}},
            ["settings.url"],
        ),
        (
            {
                "app": "webhook",
                "credentials": {"signing_secret": "hunter2"},
                "settings": {"url": "https://h.example.com"},
            },
            ["credentials.signing_secret"],
        ),
        ({"app": "webhook", "credentials": "secret", "settings": {}}, ["credentials"]),
        ({}, ["app"]),
    ],
)
def test_invalid_integration_fields_are_422s_and_store_nothing(
    api: Api, rt: Runtime, body: Any, fields: list[str]
) -> None:
    assert_error(api.post("/api/v1/integrations", json=body), 422, *fields)
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Integration)) == 0


def test_connecting_an_app_twice_is_a_409(api: Api) -> None:
    assert api.post("/api/v1/integrations", json={"app": "sandbox"}).status_code == 201
    assert_error(api.post("/api/v1/integrations", json={"app": "sandbox"}), 409)


def test_a_bad_patch_is_a_422_and_keeps_the_integration_as_it_was(api: Api) -> None:
    api.post(
        "/api/v1/integrations",
        json={
            "app": "webhook",
            "credentials": {"signing_secret": SECRET},
            "settings": {"url": "https://h.example.com"},
        },
    )
    before = api.get("/api/v1/integrations/webhook").json
    assert_error(api.patch("/api/v1/integrations/webhook", json={"settings": {"url": "nope"}}), 422, "settings.url")
    assert_error(api.patch("/api/v1/integrations/webhook", json={"state": "needs_attention"}), 422, "state")
    assert api.get("/api/v1/integrations/webhook").json == before


def test_sending_masked_credentials_back_keeps_the_stored_secret(api: Api, rt: Runtime) -> None:
    api.post(
        "/api/v1/integrations",
        json={
            "app": "webhook",
            "credentials": {"signing_secret": SECRET},
            "settings": {"url": "https://h.example.com"},
        },
    )
    masked = api.get("/api/v1/integrations/webhook").json["credentials"]
    answer = api.patch(
        "/api/v1/integrations/webhook", json={"credentials": masked, "settings": {"url": "https://new.example.com"}}
    )
    assert answer.status_code == 200, answer.json
    with rt.db.session() as session:
        stored = rt.box.decrypt(session.scalars(select(Integration.credentials)).one())
    assert stored == {"signing_secret": SECRET}


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_an_app_that_is_not_connected_is_a_404(api: Api, method: str) -> None:
    assert_error(getattr(api, method)("/api/v1/integrations/klaviyo", json={}), 404)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["target"]),
        ({"target": {}}, ["target"]),
        ({"target": {"email": "nope"}}, ["target.email"]),
        ({"target": {"email": "a@example.com"}, "event": ""}, ["event"]),
    ],
)
def test_an_invalid_test_event_is_a_422(api: Api, body: Any, fields: list[str]) -> None:
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    assert_error(api.post("/api/v1/integrations/sandbox/test-events", json=body), 422, *fields)


def test_a_test_event_for_an_app_that_is_not_connected_is_a_404_and_creates_nothing(api: Api, rt: Runtime) -> None:
    assert_error(api.post("/api/v1/integrations/sandbox/test-events", json={"target": {"email": "a@example.com"}}), 404)
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Action)) == 0


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/api/v1/actions", {"state": "lost"}, "state"),
        ("/api/v1/actions", {"kind": "fax"}, "kind"),
        ("/api/v1/actions", {"trigger": "cron"}, "trigger"),
        ("/api/v1/actions", {"limit": "0"}, "limit"),
        ("/api/v1/actions", {"limit": "lots"}, "limit"),
        ("/api/v1/actions", {"cursor": "!!!"}, "cursor"),
        ("/api/v1/actions", {"cursor": "djI6MTA"}, "cursor"),
        ("/api/v1/events", {"status": "lost"}, "status"),
        ("/api/v1/events", {"limit": "1000"}, "limit"),
        ("/api/v1/sandbox/requests", {"cursor": "abc"}, "cursor"),
    ],
)
def test_invalid_filters_are_422s(api: Api, path: str, query: dict[str, str], field: str) -> None:
    assert_error(api.get(path, query_string=query), 422, field)


@pytest.mark.parametrize("path", ["/api/v1/actions/999999", "/api/v1/actions/abc", "/api/v1/nothing-here"])
def test_unknown_ids_and_paths_are_404s(api: Api, path: str) -> None:
    assert_error(api.get(path), 404)


def test_a_wrong_method_is_a_405_with_allow(api: Api) -> None:
    answer = api.put("/api/v1/triggers", json={})
    assert_error(answer, 405)
    assert "POST" in answer.headers["Allow"]


def test_the_openapi_document_is_public_and_describes_every_route(app: Flask) -> None:
    answer = app.test_client().get("/api/v1/openapi.json")
    assert answer.status_code == 200
    spec = answer.json
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) >= {
        "/api/v1/triggers",
        "/api/v1/actions",
        "/api/v1/actions/{action_id}",
        "/api/v1/events",
        "/api/v1/integrations",
        "/api/v1/integrations/{app}",
        "/api/v1/integrations/{app}/test-events",
        "/api/v1/integrations/{app}/samples",
        "/api/v1/sandbox/requests",
        "/api/v1/queue",
        "/api/v1/incomplete",
        "/api/v1/actions/{action_id}/cancel",
        "/api/v1/actions/{action_id}/explain",
        "/api/v1/actions/export",
        "/api/v1/bulk-operations",
        "/api/v1/bulk-operations/{operation_id}",
        "/api/v1/stats",
        "/api/v1/audit",
        "/api/v1/customers/{customer_id}/timeline",
        "/api/v1/triggers/{trigger_id}",
    }
    assert "TriggerIn" in spec["components"]["schemas"]
    headers = {p["name"] for p in spec["paths"]["/api/v1/triggers"]["post"]["parameters"] if p["in"] == "header"}
    assert headers == {"Idempotency-Key", "Prefer"}


def test_the_sandbox_platform_refuses_a_wrong_key_and_records_it(api: Api, app: Flask) -> None:
    sandbox = api.post("/api/v1/integrations", json={"app": "sandbox"}).json
    client = app.test_client()
    path = f"/sandbox/{sandbox['id']}/events"
    answer = client.post(
        path, json={"name": "x", "customer": {"email": "a@b.co"}}, headers={"Authorization": "Bearer wrong"}
    )
    assert answer.status_code == 401
    assert client.post("/sandbox/999999/events", json={}).status_code == 404
    [recorded] = api.get("/api/v1/sandbox/requests").json["data"]
    assert recorded["status"] == 401 and recorded["headers"]["authorization"] == "[redacted]"


def test_ids_too_large_for_the_database_are_404s_not_overflows(api: Api, app: Flask) -> None:
    assert_error(api.get("/api/v1/actions/860046259855300285693952"), 404)
    assert app.test_client().post("/sandbox/99999999999999/events", json={}).status_code == 404
    cursor = "djE6ODYwMDQ2MjU5ODU1MzAwMjg1NjkzOTUy"  # "v1:860046259855300285693952"
    assert_error(api.get("/api/v1/actions", query_string={"cursor": cursor}), 422, "cursor")


ODD_TRIGGER_REQUESTS: list[dict[str, Any]] = [
    {"json": {**VALID_TRIGGER, "review": {"rating": 9}}},
    {"json": {**VALID_TRIGGER, "surprise": True}},
    {"json": [VALID_TRIGGER]},
    {"json": None},
    {"data": json.dumps(VALID_TRIGGER), "headers": {"Content-Type": "text/plain"}},
    {"data": json.dumps(VALID_TRIGGER)},
    {"data": "{not json", "headers": {"Content-Type": "application/json"}},
    {"data": b"\xff\xfe{}", "headers": {"Content-Type": "application/json"}},
    {"data": json.dumps(VALID_TRIGGER).encode("utf-16"), "headers": {"Content-Type": "application/json"}},
    {"json": {**VALID_TRIGGER, "customer": {"email": "a@example.com", "phone": "555"}}},
    {"json": {**VALID_TRIGGER, "review": {"rating": 5}}, "headers": {"Idempotency-Key": ""}},
]


def test_post_triggers_answers_odd_requests_exactly_as_webargs_does(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /triggers reads a valid body itself, without webargs; whatever else arrives must get webargs' answer."""
    fast = [api.post("/api/v1/triggers", **request) for request in ODD_TRIGGER_REQUESTS]
    monkeypatch.setattr(TriggerIn, "fast_load", lambda self, data: None)  # every request through webargs
    slow = [api.post("/api/v1/triggers", **request) for request in ODD_TRIGGER_REQUESTS]
    for request, a, b in zip(ODD_TRIGGER_REQUESTS, fast, slow, strict=True):
        assert (a.status_code, a.json) == (b.status_code, b.json), request
    assert {a.status_code for a in fast} == {400, 422}


def test_a_trigger_sent_as_json_of_another_json_type_is_accepted(api: Api) -> None:
    headers = {"Content-Type": "application/vnd.example+json"}
    assert api.post("/api/v1/triggers", data=json.dumps(VALID_TRIGGER), headers=headers).status_code == 202
