"""Shapes shared by every route: errors and cursor pagination."""

from __future__ import annotations

import base64
import binascii

import marshmallow as ma
from marshmallow import fields, validate


class ErrorDetail(ma.Schema):
    status = fields.Integer(required=True)
    code = fields.String(required=True, metadata={"description": "Stable, machine-readable error code."})
    message = fields.String(required=True)
    fields_ = fields.Dict(
        data_key="fields",
        metadata={"description": "Field errors: a path to the field, then its messages."},
    )
    current_state = fields.String(metadata={"description": "On a 409: the state the action is in now."})


class ErrorSchema(ma.Schema):
    """Every error answer has this one shape."""

    error = fields.Nested(ErrorDetail, required=True)


class Cursor(fields.String):
    """An opaque keyset cursor; loads as the last id of the previous page."""

    def _deserialize(self, value: object, attr: str | None, data: object, **kwargs: object) -> int:  # type: ignore[override]
        return decode_cursor(str(super()._deserialize(value, attr, data, **kwargs)))


class PageQuery(ma.Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = Cursor(load_default=None, metadata={"description": "next_cursor of the previous page"})


MAX_ID = 2**63 - 1  # ids are 64-bit integers: a larger one cannot exist, and asking would overflow the column


def encode_cursor(*position: int, version: str = "v1") -> str:
    """An opaque cursor for a keyset position (the last row's id, or its sort key and id)."""
    text = ":".join((version, *map(str, position)))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_position(cursor: str, version: str = "v1", limits: tuple[int, ...] = (MAX_ID,)) -> tuple[int, ...]:
    """The keyset position in a cursor, each part within 0..limit. Raises ValidationError for anything we did
    not issue."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        found, *parts = text.split(":")
        position = tuple(int(part) for part in parts)
        if found != version or len(position) != len(limits):
            raise ValueError
        if not all(0 <= part <= limit for part, limit in zip(position, limits, strict=True)):
            raise ValueError
        return position
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ma.ValidationError("Not a valid cursor.") from None


def decode_cursor(cursor: str) -> int:
    """The last id of the previous page. Raises ValidationError for anything we did not issue."""
    return decode_position(cursor)[0]
