"""The JSON API: flask-smorest blueprints under /api/v1, one error shape, bearer-token auth by store."""

from __future__ import annotations

import logging
from typing import Any

import flask_smorest
from flask import Flask, current_app, g, request
from flask_smorest import Api
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from hub import audit, stores
from hub.integrations import IntegrationError
from hub.models import Store
from hub.operations import OperationError
from hub.runtime import Runtime
from schemas.common import ErrorSchema

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
}


def flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow's nested messages as dotted paths: {"customer.email": ["Not a valid email address."]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if not prefix and key in ("json", "query", "form", "files", "headers"):
                path = ""  # where webargs found it; the field path says enough
            elif key == "_schema":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for sub, msgs in flatten(value, path).items():
                flat.setdefault(sub, []).extend(msgs)
    elif isinstance(messages, list) and not all(isinstance(m, str) for m in messages):
        for item in messages:
            for sub, msgs in flatten(item, prefix).items():
                flat.setdefault(sub, []).extend(msgs)
    else:
        flat[prefix or "_body"] = [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]
    return flat


def error_response(
    status: int, message: str, fields: dict[str, Any] | None = None, code: str | None = None, **extra: Any
) -> tuple[dict[str, Any], int]:
    detail: dict[str, Any] = {"status": status, "code": code or CODES.get(status, "error"), "message": message}
    if fields:
        detail["fields"] = fields
    detail.update({k: v for k, v in extra.items() if v is not None})
    return {"error": detail}, status


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint, each argument schema made once: given a schema class, webargs makes a new schema
    (deep-copying its fields) on every request, ~5 % of a list call. Loading through one instance is safe across
    threads (marshmallow keeps a load's state in the call)."""

    def arguments(self, schema: Any, **kwargs: Any) -> Any:
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)


class HubApi(Api):
    """flask-smorest's Api with our one error shape (and the Allow header kept on 405)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException):  # type: ignore[override]
        data = getattr(error, "data", None) or {}
        status = error.code or 500
        headers = dict(data.get("headers") or {})
        if status == 405:
            headers.update(dict(error.get_headers()))
            headers.pop("Content-Type", None)
        if status >= 500:
            return (*error_response(500, "Something went wrong on our side; it has been logged."), headers)
        messages = data.get("errors") or data.get("messages")
        fields = flatten(messages) if messages else None
        message = data.get("message") or (
            "The request has invalid fields." if fields and status == 422 else error.description or error.name
        )
        if fields and status == 400 and "_body" in fields:
            message = "; ".join(fields["_body"])
        return (*error_response(status, message, fields, current_state=data.get("current_state")), headers)


def runtime() -> Runtime:
    return current_app.extensions["tidings"]  # type: ignore[no-any-return]


def db_session() -> Session:
    """The request's session: a reader (hub.db.Database.reader) for a GET or HEAD, which only reads."""
    if "db_session" not in g:
        db = runtime().db
        g.db_session = db.reader() if request.method in ("GET", "HEAD") else db.session()
    return g.db_session  # type: ignore[no-any-return]


def current_store() -> Store:
    return g.store  # type: ignore[no-any-return]


def current_actor() -> str:
    """Who is calling, as the audit log names them: the API token's id and name."""
    return g.actor  # type: ignore[no-any-return]


def authenticate() -> tuple[dict[str, Any], int] | None:
    """before_request for API blueprints: a valid bearer token selects the store every query is scoped by."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return error_response(401, "Send an API token: Authorization: Bearer <token>.")
    # Cached per process for a few seconds (hub.caches): a busy integration's calls skip the query, and need no
    # session for it (POST /triggers on PostgreSQL then uses none of the request's own).
    cache = runtime().caches.tokens
    found = stores.identify_cached(token.strip(), cache)
    if found is None:
        session = db_session()
        found = stores.identify(session, token.strip(), cache)
        if found is None:
            return error_response(401, "The API token is not valid (or was revoked).")
        if session.in_transaction():
            session.commit()
    g.store, g.actor = found[0], audit.token_actor(found[1])
    return None


def init_app(app: Flask) -> HubApi:
    app.config.update(
        API_TITLE="Tidings",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
    )
    api = HubApi(
        app,
        spec_kwargs={
            "info": {
                "description": "Tidings: review-request flows to marketing platforms, through an outbox you can steer."
            },
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
    )
    from hub.api import actions, bulk, customers, integrations, outbox, reports, store, triggers

    for module in (triggers, integrations, actions, reports, outbox, bulk, customers, store):
        api.register_blueprint(module.blp, url_prefix="/api/v1")

    @app.errorhandler(IntegrationError)
    def on_integration_error(error: IntegrationError):  # type: ignore[no-untyped-def]
        body, status = error_response(error.status, error.message, flatten(error.fields) or None, error.code)
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
        return body, status, headers

    @app.errorhandler(OperationError)
    def on_operation_error(error: OperationError):  # type: ignore[no-untyped-def]
        return error_response(
            error.status, error.message, flatten(error.fields) or None, current_state=error.current_state
        )

    @app.teardown_appcontext
    def close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    return api
