"""The store's own settings: its time zone and quiet hours (hub.quiet)."""

from __future__ import annotations

import functools
import zoneinfo
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

QUIET_HOURS_APPLIES_TO = ("sms", "all")


@functools.cache
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone(name: str) -> bool:
    """An IANA name zoneinfo knows ("Europe/Paris", "UTC"), and never a file path or an abbreviation ("CEST")."""
    return name in known_timezones()


def parse_clock(text: str) -> int:
    """ "21:00" as minutes after midnight. Raises ValueError for anything else."""
    hours, sep, minutes = text.partition(":")
    if not sep or len(hours) != 2 or len(minutes) != 2 or not (hours + minutes).isdigit():
        raise ValueError("Use HH:MM, 24-hour (e.g. 21:00).")
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError("Use HH:MM, 24-hour (e.g. 21:00).")
    return int(hours) * 60 + int(minutes)


def clock(minutes: int) -> str:
    """Minutes after midnight as HH:MM."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def validate_timezone(value: str) -> None:
    if not is_timezone(value):
        raise ma.ValidationError("Not a known IANA time zone (e.g. America/New_York, Europe/Paris, UTC).")


def validate_clock(value: str) -> None:
    try:
        parse_clock(value)
    except ValueError as error:
        raise ma.ValidationError(str(error)) from None


class QuietHoursIn(ma.Schema):
    start = fields.String(
        required=True, validate=validate_clock, metadata={"description": "Local time they begin, HH:MM (e.g. 21:00)."}
    )
    end = fields.String(
        required=True, validate=validate_clock, metadata={"description": "Local time they end, HH:MM (e.g. 08:00)."}
    )
    applies_to = fields.String(
        load_default="sms",
        validate=validate.OneOf(QUIET_HOURS_APPLIES_TO),
        metadata={"description": "sms: SMS messages and apps whose events lead to SMS (default); all: every action."},
    )

    @ma.validates_schema
    def not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("start") and data.get("start") == data.get("end"):
            raise ma.ValidationError("Quiet hours must end at another time than they start.", field_name="end")


class StorePatch(ma.Schema):
    timezone = fields.String(
        validate=[validate.Length(max=64), validate_timezone],
        metadata={"description": "IANA time zone the store's quiet hours are read in."},
    )
    quiet_hours = fields.Nested(
        QuietHoursIn,
        allow_none=True,
        metadata={"description": "When text messages must not go out; null turns quiet hours off."},
    )


class QuietHoursOut(ma.Schema):
    start = fields.String()
    end = fields.String()
    applies_to = fields.String()


class StoreOut(ma.Schema):
    id = fields.Integer()
    name = fields.String()
    event_prefix = fields.String()
    timezone = fields.String()
    quiet_hours = fields.Nested(QuietHoursOut, allow_none=True)
    created_at = fields.AwareDateTime()
