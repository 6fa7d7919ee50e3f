"""The canonical event payload that the hub snapshots on an action and hands to connectors."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields


class EventCustomer(ma.Schema):
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)


class EventPayload(ma.Schema):
    """Stored as the action's payload; loaded back into a connectors.base.Event at delivery."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    customer = fields.Nested(EventCustomer, required=True)
    properties = fields.Dict(load_default=dict)
    test = fields.Boolean(load_default=False)


CUSTOMER_KEYS = ("email", "phone", "first_name", "last_name", "external_id")


def event_payload(
    *,
    id: str,
    name: str,
    type: str,
    occurred_at: datetime,
    customer: Mapping[str, Any],
    properties: Mapping[str, Any],
    test: bool,
    occurred_at_text: str | None = None,
) -> dict[str, Any]:
    """Exactly what ``EventPayload().dump`` gives for these values (tests/test_fastload.py compares them), in
    plain Python: ingest builds one per action, and marshmallow's dump cost more than the rest of building it.
    ``occurred_at_text`` is ``occurred_at.isoformat()`` when the caller has it already."""
    return {
        "id": id,
        "name": name,
        "type": type,
        "occurred_at": occurred_at_text if occurred_at_text is not None else occurred_at.isoformat(),
        "customer": {k: customer.get(k) for k in CUSTOMER_KEYS},
        "properties": dict(properties),
        "test": test,
    }
