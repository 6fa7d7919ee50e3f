"""POST /api/v1/triggers: something happened in the shop or the review app."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_smorest import Blueprint, abort

from hub import flows
from hub.api import authenticate, current_store, db_session
from schemas.actions import TriggerOut
from schemas.triggers import TriggerIn

blp = Blueprint("triggers", __name__, description="Triggers in: orders and reviews that start flows.")
blp.before_request(authenticate)

MAX_IDEMPOTENCY_KEY = 200


@blp.route("/triggers", methods=["POST"])
@blp.arguments(TriggerIn)
@blp.response(202, TriggerOut)
@blp.alt_response(200, schema=TriggerOut, description="The same trigger was seen before; nothing new was created.")
@blp.alt_response(401, description="Missing or invalid API token")
@blp.alt_response(422, description="Invalid fields")
def post_trigger(data: dict[str, Any]) -> Any:
    """Accept a trigger and create the actions of every flow it starts.

    The same trigger again (same type and order id, same review id, or the same `Idempotency-Key`
    header) creates nothing new and answers with the actions created the first time.
    """
    header_key = request.headers.get("Idempotency-Key")
    if header_key is not None and not 0 < len(header_key.strip()) <= MAX_IDEMPOTENCY_KEY:
        abort(
            400,
            message="Invalid Idempotency-Key header.",
            errors={"Idempotency-Key": [f"Must be 1 to {MAX_IDEMPOTENCY_KEY} characters."]},
        )
    session = db_session()
    result = flows.ingest(session, current_store(), data, header_key.strip() if header_key else None)
    session.commit()
    body = {
        "id": result.trigger.id,
        "type": result.trigger.type,
        "duplicate": result.duplicate,
        "actions": result.actions,
        "cancelled": result.cancelled,
    }
    return body, (200 if result.duplicate else 202)
