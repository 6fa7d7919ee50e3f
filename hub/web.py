"""Routes outside the JSON API: the built-in sandbox platform and the landing page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from hub import sandbox
from hub.api import db_session, runtime

blp = Blueprint("web", __name__)


def _reply(answer: sandbox.Answer) -> Response:
    response = jsonify(answer.body)
    response.status_code = answer.status
    response.headers.update(answer.headers)
    return response


@blp.post("/sandbox/<int:integration_id>/events")
def sandbox_events(integration_id: int) -> Response:
    body: Any = request.get_json(silent=True)
    if body is None:
        body = request.get_data(as_text=True)[:2000]
    headers = {k.lower(): v for k, v in request.headers.items()}
    session = db_session()
    answer = sandbox.receive(runtime(), session, integration_id, request.headers.get("Authorization"), headers, body)
    session.commit()
    return _reply(answer)


@blp.get("/sandbox/<int:integration_id>/account")
def sandbox_account(integration_id: int) -> Response:
    return _reply(sandbox.account(runtime(), db_session(), integration_id, request.headers.get("Authorization")))


@blp.get("/")
def index() -> Response:
    return jsonify(
        {
            "name": "Tidings",
            "api": "/api/v1",
            "openapi": "/api/v1/openapi.json",
            "docs": "Send 'Authorization: Bearer <token>' to /api/v1; create a token with: hub tokens create",
        }
    )


@blp.get("/healthz")
def healthz() -> Response:
    return jsonify({"ok": True})
