"""POST /api/v1/triggers (and /triggers/bulk): something happened in the shop or the review app."""

from __future__ import annotations

from typing import Any

from flask import jsonify, request
from flask_smorest import Blueprint, abort

from hub import bulk_ingest, flows
from hub.api import authenticate, current_store, db_session, runtime
from schemas.actions import TriggerOut
from schemas.triggers import BULK_STATUSES, MAX_BULK_TRIGGERS, BulkTriggersIn, BulkTriggersOut, TriggerIn

blp = Blueprint("triggers", __name__, description="Triggers in: orders and reviews that start flows.")
blp.before_request(authenticate)

MAX_IDEMPOTENCY_KEY = 200
# An instance, not the class: webargs makes a new schema (deep-copying its fields) for every request given a class.
_trigger_in = TriggerIn()


@blp.route("/triggers", methods=["POST"])
@blp.arguments(_trigger_in)
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
    result = flows.ingest(
        session,
        current_store(),
        data,
        header_key.strip() if header_key else None,
        cache=runtime().caches.stores,
    )
    session.commit()
    body = {
        "id": result.trigger.id,
        "type": result.trigger.type,
        "duplicate": result.duplicate,
        "actions": result.actions,
        "cancelled": result.cancelled,
    }
    return body, (200 if result.duplicate else 202)


NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")


@blp.route("/triggers/bulk", methods=["POST"])
@blp.doc(
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": BulkTriggersIn},
            "application/x-ndjson": {"schema": {"type": "string", "description": "One trigger (JSON) per line."}},
        },
    }
)
@blp.response(200, BulkTriggersOut)
@blp.alt_response(400, description="The body is not JSON")
@blp.alt_response(401, description="Missing or invalid API token")
@blp.alt_response(413, description=f"More than {MAX_BULK_TRIGGERS} triggers")
@blp.alt_response(415, description="Neither JSON nor NDJSON")
@blp.alt_response(422, description="No `triggers` list")
def post_triggers_bulk() -> Any:
    """Accept up to 1,000 triggers at once: `{"triggers": [...]}` as JSON, or NDJSON, one trigger per line.

    Each trigger is judged on its own and the answer says, in order, what became of each: `accepted`
    (with its trigger id and action ids), `duplicate` (seen before, or earlier in the same request: the
    ids of what was created the first time) or `rejected` (with its field errors; nothing of it is stored).
    The answer is 200 whenever the request itself could be read, even if every trigger was rejected.
    The accepted ones are committed together before the answer. Each trigger may carry an
    `idempotency_key`, which is to it what the Idempotency-Key header is to a single trigger.
    """
    items = _bulk_items()
    with bulk_ingest.collector_paused():
        valid, rejected = bulk_ingest.validate(items)
        session = db_session()
        accepted = bulk_ingest.ingest_many(session, current_store(), valid, cache=runtime().caches.stores)
        session.commit()
    results = sorted(accepted + rejected, key=lambda r: r.index)
    counts = {status: sum(1 for r in results if r.status == status) for status in BULK_STATUSES}
    body = {
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "results": [{k: v for k, v in vars(r).items() if v is not None or k == "trigger_id"} for r in results],
    }
    # Already in BulkTriggersOut's shape, of JSON types only: a Response skips the schema's dump of a thousand
    # items (flask-smorest passes a Response through; the schema still documents it).
    return jsonify(body)


def _bulk_items() -> list[Any]:
    if request.mimetype in NDJSON_TYPES:
        items = bulk_ingest.parse_ndjson(request.get_data(as_text=True))
    elif request.is_json:
        body = request.get_json(silent=True)
        if body is None:
            abort(400, message="The body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("triggers"), list):
            abort(422, errors={"triggers": ['Send the triggers as a list: {"triggers": [...]}.']})
        items = body["triggers"]
    else:
        abort(415, message='Send JSON ({"triggers": [...]}) or NDJSON (application/x-ndjson, one trigger a line).')
    if not items:
        abort(422, errors={"triggers": ["Send at least one trigger."]})
    if len(items) > MAX_BULK_TRIGGERS:
        abort(
            413,
            message=f"At most {MAX_BULK_TRIGGERS} triggers per request; got {len(items)}.",
            errors={"triggers": [f"At most {MAX_BULK_TRIGGERS} triggers per request; send the rest in another."]},
        )
    return items
