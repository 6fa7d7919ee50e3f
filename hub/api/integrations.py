"""Integrations: connect an app, change it, disconnect it, and fire manual test events at it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub import integrations as service
from hub import manual
from hub.api import Blueprint, authenticate, current_store, db_session, runtime
from hub.api.paging import page_of
from hub.models import Integration, IntegrationState, SandboxRequest
from schemas.actions import ActionList, ActionOut
from schemas.common import PageQuery
from schemas.integrations import (
    IntegrationIn,
    IntegrationList,
    IntegrationOut,
    IntegrationPatch,
    SamplesIn,
    SandboxRequestPage,
    TestEventIn,
)

blp = Blueprint("integrations", __name__, description="Apps a store is connected to.")
blp.before_request(authenticate)


def present(integration: Integration) -> dict[str, Any]:
    from connectors import registry

    try:
        connector = registry.get(integration.app)
    except registry.UnknownConnector:
        label, published = integration.app, None
    else:
        label, published = connector.label, connector.capabilities.rate_limit_per_second
    return {
        "id": integration.id,
        "app": integration.app,
        "label": label,
        "state": integration.state,
        "credentials": service.masked_credentials(runtime(), integration),
        "settings": integration.settings,
        "rate_limit_per_second": integration.rate_limit_per_second,
        "published_rate_limit_per_second": published,
        "effective_rate_limit_per_second": integration.rate_limit_per_second or published,
        "last_error": integration.last_error,
        "created_at": integration.created_at,
        "updated_at": integration.updated_at,
    }


@blp.route("/integrations", methods=["POST"])
@blp.arguments(IntegrationIn)
@blp.response(201, IntegrationOut)
@blp.alt_response(409, description="The app is already connected")
@blp.alt_response(422, description="Invalid fields, or the platform rejected the credentials")
@blp.alt_response(429, description="The platform's limit for checking credentials: try again after Retry-After")
def create_integration(data: dict[str, Any]) -> Any:
    """Connect an app. Credentials are checked against the platform when the connector can."""
    session = db_session()
    integration = service.connect(runtime(), session, current_store(), data)
    session.commit()
    return present(integration)


@blp.route("/integrations", methods=["GET"])
@blp.response(200, IntegrationList)
def list_integrations() -> Any:
    rows = db_session().scalars(
        select(Integration)
        .where(Integration.store_id == current_store().id, Integration.state != IntegrationState.DISCONNECTED)
        .order_by(Integration.app)
    )
    return {"data": [present(i) for i in rows]}


@blp.route("/integrations/<string:app>", methods=["GET"])
@blp.response(200, IntegrationOut)
@blp.alt_response(404, description="Not connected")
def get_integration(app: str) -> Any:
    return present(service.get(db_session(), current_store(), app))


@blp.route("/integrations/<string:app>", methods=["PATCH"])
@blp.arguments(IntegrationPatch)
@blp.response(200, IntegrationOut)
@blp.alt_response(422, description="Invalid fields, or the platform rejected the new credentials")
@blp.alt_response(429, description="The platform's limit for checking credentials: try again after Retry-After")
def patch_integration(data: dict[str, Any], app: str) -> Any:
    """Change credentials or settings, the delivery rate, pause, or resume. Masked secrets sent back keep the
    stored value; `rate_limit_per_second: null` goes back to the app's published rate.

    New credentials for an integration that needs attention are verified, and its held actions released.
    """
    session = db_session()
    integration = service.change(runtime(), session, current_store(), app, data)
    session.commit()
    return present(integration)


@blp.route("/integrations/<string:app>", methods=["DELETE"])
@blp.response(204)
def delete_integration(app: str) -> None:
    """Disconnect: credentials are erased, and actions still waiting for this app are skipped."""
    session = db_session()
    service.disconnect(session, current_store(), app)
    session.commit()


@blp.route("/integrations/<string:app>/test-events", methods=["POST"])
@blp.arguments(TestEventIn)
@blp.response(202, ActionOut)
def post_test_event(data: dict[str, Any], app: str) -> Any:
    """Send a manual test event now (it skips the dispatcher's poll). Read the result at /actions/<id>."""
    return manual.send_test_event(runtime(), db_session(), current_store(), app, data)


@blp.route("/integrations/<string:app>/samples", methods=["POST"])
@blp.arguments(SamplesIn)
@blp.response(202, ActionList)
def post_samples(data: dict[str, Any], app: str) -> Any:
    """Send a labelled sample of every event the store's flows send to this app, now.

    The events carry their real names (so the platform's flows can be built on them) and
    `"sample": true` in their properties.
    """
    return {"data": manual.send_samples(runtime(), db_session(), current_store(), app, data["target"])}


@blp.route("/sandbox/requests", methods=["GET"])
@blp.arguments(PageQuery, location="query")
@blp.response(200, SandboxRequestPage)
def list_sandbox_requests(query: dict[str, Any]) -> Any:
    """What the built-in sandbox app received and answered, newest first."""
    statement = select(SandboxRequest).where(SandboxRequest.store_id == current_store().id)
    return page_of(statement, SandboxRequest, query)
