"""POST /api/v1/triggers (and /triggers/bulk): something happened in the shop or the review app."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
from flask import Response, current_app, jsonify, request
from flask_smorest import Blueprint, abort
from webargs.flaskparser import is_json_request

from connectors.base import ORJSON_STRICT
from hub import audit, bulk_ingest, flows, inbox
from hub.api import authenticate, current_actor, current_store, db_session, runtime
from hub.models import Trigger
from hub.runtime import collector_paused
from schemas.actions import TriggerOut, action_out
from schemas.common import MAX_ID
from schemas.triggers import (
    BULK_STATUSES,
    MAX_BULK_TRIGGERS,
    BulkTriggersIn,
    BulkTriggersOut,
    ReceivedOut,
    RetriedOut,
    TriggerIn,
)

blp = Blueprint("triggers", __name__, description="Triggers in: orders and reviews that start flows.")
blp.before_request(authenticate)

F = TypeVar("F", bound=Callable[..., Any])

MAX_IDEMPOTENCY_KEY = 200
# An instance, not the class: webargs makes a new schema (deep-copying its fields) for every request given a class.
_trigger_in = TriggerIn()


def documented(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """flask-smorest's decorators for the OpenAPI document only: the view keeps its own request handling.

    Each decorator (listed as it would be stacked) records what it documents in the function's ``_apidoc``, which
    is all ``Blueprint.route`` reads; the wrappers it would put around the view (webargs' parsing, the response's
    dump) are left out, for a view that does that work itself, more cheaply."""

    def apply(func: F) -> F:
        wrapped: Any = func
        for decorator in reversed(decorators):
            wrapped = decorator(wrapped)
        func._apidoc = wrapped._apidoc  # type: ignore[attr-defined]
        return func

    return apply


HEADERS = [
    {
        "in": "header",
        "name": "Idempotency-Key",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
        "description": "The same key again (for the same store) is the same trigger: nothing new is created.",
    },
    {
        "in": "header",
        "name": "Prefer",
        "required": False,
        "schema": {"type": "string", "example": "respond-async"},
        "description": "`respond-async`: store the trigger and answer before its flows run (PostgreSQL).",
    },
]


@blp.route("/triggers", methods=["POST"])
@documented(
    blp.doc(parameters=HEADERS),
    blp.arguments(_trigger_in),
    blp.response(202, TriggerOut),
    blp.alt_response(200, schema=TriggerOut, description="The same trigger was seen before; nothing new was created."),
    blp.alt_response(401, description="Missing or invalid API token"),
    blp.alt_response(422, description="Invalid fields"),
)
def post_trigger() -> Any:
    """Accept a trigger and create the actions of every flow it starts.

    The same trigger again (same type and order id, same review id, or the same `Idempotency-Key`
    header) creates nothing new and answers with the actions created the first time.

    With `Prefer: respond-async` (RFC 7240), the trigger is checked and stored, and the answer (202, with
    `Preference-Applied: respond-async`, `status: received` and the id the trigger will have) comes before its
    flows run: the dispatcher processes it a moment later, and `GET /triggers/{id}` shows its actions then. For
    senders that do not need the actions in the answer; it takes less of the hub's time per trigger. A database
    other than PostgreSQL ignores the preference and answers as usual.
    """
    data = _trigger_from_request()
    header_key = request.headers.get("Idempotency-Key")
    if header_key is not None and not 0 < len(header_key.strip()) <= MAX_IDEMPOTENCY_KEY:
        abort(
            400,
            message="Invalid Idempotency-Key header.",
            errors={"Idempotency-Key": [f"Must be 1 to {MAX_IDEMPOTENCY_KEY} characters."]},
        )
    if runtime().db.is_postgresql and prefers_async(request.headers.get("Prefer")):
        return _receive(data, header_key.strip() if header_key else None)
    # On PostgreSQL an autocommit connection: ingest writes in one statement (or a transaction of its own), so the
    # request pays no BEGIN or COMMIT round trip, and the usual trigger needs no session. On SQLite a plain session,
    # committed here.
    with runtime().db.statements() as work:
        result = flows.ingest(
            work,
            current_store(),
            data,
            header_key.strip() if header_key else None,
            cache=runtime().caches.stores,
        )
        work.commit()  # on PostgreSQL a trigger that took the usual path has nothing to commit here
    return _processed(result)


def prefers_async(prefer: str | None) -> bool:
    """Whether a Prefer header (RFC 7240: preferences separated by commas, each with parameters after ``;``)
    asks for ``respond-async``."""
    if not prefer:
        return False
    return any(part.split(";", 1)[0].strip().lower() == "respond-async" for part in prefer.split(","))


def _receive(data: dict[str, Any], header_key: str | None) -> Response:
    """Store the trigger for the dispatcher to process (hub.inbox) and answer at once: 202 with the id its trigger
    will have, or 200 for a trigger seen before (waiting to be processed, or processed: then with its actions)."""
    store = current_store()
    key = flows.dedupe_key(data, header_key)
    body = request.get_data(cache=True).decode("utf-8")  # what _trigger_from_request read and loaded
    trigger_id = runtime().receiver.receive(store.id, key, header_key, body)
    if trigger_id is None:
        with runtime().db.statements() as work:
            waiting = inbox.waiting(work.session, store.id, key=key)
            if waiting is None:  # processed already (maybe a moment ago): the usual answer, with its actions
                result = flows.ingest(work, store, data, header_key, cache=runtime().caches.stores)
                work.commit()
                return _processed(result)
            answer = json_answer(_waiting_answer(waiting, duplicate=True))
            answer.status_code = 200
            return answer
    answer = json_answer(_answer(trigger_id, data["type"], "received"))
    answer.status_code = 202
    answer.headers["Preference-Applied"] = "respond-async"
    return answer


def _processed(result: flows.Ingested) -> Response:
    """A trigger processed before the answer: 202 with the actions it created, or 200 (a repeat) with those of its
    first time."""
    answer = json_answer(
        _answer(
            result.trigger.id,
            result.trigger.type,
            "processed",
            result.actions,
            duplicate=result.duplicate,
            cancelled=result.cancelled,
        )
    )
    answer.status_code = 200 if result.duplicate else 202
    return answer


def _waiting_answer(waiting: inbox.Waiting, *, duplicate: bool) -> dict[str, Any]:
    status = "received" if waiting.error is None else "failed"
    return _answer(waiting.trigger_id, waiting.type, status, duplicate=duplicate, error=waiting.error)


def _answer(
    trigger_id: int,
    trigger_type: str | None,
    status: str,
    actions: Sequence[Any] = (),
    *,
    duplicate: bool = False,
    cancelled: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """TriggerOut's shape, built directly (schemas.actions.action_out): the schema documents it. ``cancelled`` is
    known only to the request that processed the trigger, ``error`` only for one that failed to be."""
    answer: dict[str, Any] = {
        "id": trigger_id,
        "type": trigger_type,
        "duplicate": duplicate,
        "actions": [action_out(action) for action in actions],
    }
    if cancelled is not None:
        answer["cancelled"] = cancelled
    answer["status"] = status
    if error is not None:
        answer["error"] = error
    return answer


@blp.route("/triggers/received", methods=["GET"])
@blp.response(200, ReceivedOut)
def get_received() -> Any:
    """Triggers received with `Prefer: respond-async` and not processed yet: how many wait, how many could not be
    processed, and those (oldest first, up to 100) with why."""
    store = current_store()
    session = db_session()
    if not runtime().db.is_postgresql:  # nothing is received for later without PostgreSQL
        return {"waiting": 0, "failed": 0, "failed_triggers": []}
    waiting, failed = inbox.backlog(session, store.id)
    rows = inbox.failed(session, store.id)
    return {"waiting": waiting, "failed": failed, "failed_triggers": [vars(row) for row in rows]}


@blp.route("/triggers/received/retry", methods=["POST"])
@blp.response(200, RetriedOut)
def retry_received() -> Any:
    """Let the dispatcher take this store's failed received triggers again (once what made them fail is mended)."""
    store = current_store()
    if not runtime().db.is_postgresql:
        return {"retried": 0}
    session = db_session()
    retried = inbox.retry(session, store.id)
    audit.record(session, store.id, current_actor(), "retry_received", summary=True, details={"retried": retried})
    session.commit()
    return {"retried": retried}


@blp.route("/triggers/<int:trigger_id>", methods=["GET"])
@blp.response(200, TriggerOut)
@blp.alt_response(404, description="No such trigger in this store")
def get_trigger(trigger_id: int) -> Any:
    """A trigger and the actions it created; a trigger received with `Prefer: respond-async` and not processed yet
    answers `status: received` (or `failed`, with the `error`) and no actions."""
    store = current_store()
    if trigger_id > MAX_ID:  # no such row can exist; asking the database would overflow its integer type
        abort(404, message=f"No trigger {trigger_id} in this store.")
    session = db_session()
    found = flows.recorded(session, store.id, Trigger.id == trigger_id)
    if found is not None:
        return json_answer(_answer(found.trigger.id, found.trigger.type, "processed", found.actions))
    waiting = inbox.waiting(session, store.id, trigger_id=trigger_id)
    if waiting is None:
        abort(404, message=f"No trigger {trigger_id} in this store.")
        raise AssertionError("abort raises")  # for the type checker: flask-smorest's abort is not typed NoReturn
    return json_answer(_waiting_answer(waiting, duplicate=False))


def json_answer(body: dict[str, Any]) -> Response:
    """``jsonify(body)``, byte for byte, written by orjson when that gives the same text (~30 µs less a trigger).

    Flask's provider writes compact JSON (outside debug), escapes every non-ASCII character and ends with a newline;
    orjson's compact text is the same for JSON types as long as it is ASCII without DEL. The rest goes to jsonify."""
    provider: Any = current_app.json
    if provider.compact is False or (provider.compact is None and current_app.debug):
        return jsonify(body)
    try:
        raw = orjson.dumps(body, option=ORJSON_STRICT)  # what Flask's provider converts its own way raises TypeError
    except TypeError:
        return jsonify(body)
    if not raw.isascii() or b"\x7f" in raw:  # Flask escapes both (ensure_ascii), orjson writes them as they are
        return jsonify(body)
    return current_app.response_class(raw + b"\n", mimetype=provider.mimetype)


def _trigger_from_request() -> dict[str, Any]:
    """The trigger in the JSON body, loaded by TriggerIn, as webargs would give it to the view.

    A plainly valid trigger is read and loaded here (``TriggerIn.fast_load``), without webargs' machinery, which
    cost more than the load itself. Anything else (not JSON, a body that does not parse, a field error) goes
    through webargs, exactly as ``@blp.arguments`` would send it, so the 400 and 422 answers are webargs' own."""
    if is_json_request(request):
        try:
            body = json.loads(request.get_data(cache=True).decode("utf-8"))  # as webargs reads it
        except ValueError:
            pass
        else:
            loaded = _trigger_in.fast_load(body)
            if loaded is not None:
                return loaded  # type: ignore[no-any-return]
    return blp.ARGUMENTS_PARSER.parse(_trigger_in, request, location="json")  # type: ignore[no-any-return]


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
    # The collector paused for the whole request, reading the body and writing the answer too: a thousand triggers
    # are tens of thousands of objects alive until the answer is written, which collections set off meanwhile would
    # walk again and again. They are freed (the call returns) before it runs again.
    with collector_paused():
        return _bulk_answer()


def _bulk_answer() -> Response:
    items = _bulk_items()
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
    return json_answer(body)


def _bulk_items() -> list[Any]:
    if request.mimetype in NDJSON_TYPES:
        items = bulk_ingest.parse_ndjson(request.get_data(as_text=True))
    elif request.is_json:
        body = request.get_json(silent=True)
        if body is None:
            abort(400, message="The body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("triggers"), list):
            abort(422, errors={"triggers": ['Send the triggers as a list: {"triggers": [...]}.']})
        items = body["triggers"]  # type: ignore[index]  # abort() raises: body is a dict here
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
