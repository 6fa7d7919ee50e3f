"""The canonical event payload that the hub snapshots on an action and hands to connectors."""

from __future__ import annotations

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
