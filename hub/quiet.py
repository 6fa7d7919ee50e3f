"""Quiet hours: the store's night, when text messages wait for the morning.

A store has an IANA time zone and, optionally, quiet hours in it: a start and an end in local wall-clock time
(21:00–08:00 crosses midnight, the usual case). They apply to what leads to a text message — a native SMS, or
an event for an app whose connector declares ``Capabilities.sms`` — or, when the store says so, to everything.
An action that falls due inside the window is moved to the window's end, in the store's time zone (zoneinfo,
so the end is 08:00 local on a DST day too): when a flow schedules it, and again just before delivery, where
it goes back to pending without spending an attempt (hub.guards runs the check; reason code ``quiet_hours``).

A merchant's explicit choice passes: test events and samples (trigger ``manual``) and Send now
(``Action.ignore_quiet_hours``). Replays, retries, releases after a pause and delayed actions do not.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hub.models import Store
from schemas.stores import clock, is_timezone

CODE = "quiet_hours"
BYPASS_TRIGGERS = ("manual", "test")  # a merchant's test events and samples


@dataclass(frozen=True)
class QuietHours:
    timezone: str
    start: int  # minutes after local midnight
    end: int
    applies_to: str = "sms"  # sms | all

    @classmethod
    def of(cls, store: Store | None) -> QuietHours | None:
        if store is None or store.quiet_hours_start is None or store.quiet_hours_end is None:
            return None
        # The API admits only known zones; one the system no longer knows (its tz database changed) reads as UTC
        # rather than stopping every delivery of the store.
        zone = store.timezone if store.timezone and is_timezone(store.timezone) else "UTC"
        return cls(zone, store.quiet_hours_start, store.quiet_hours_end, store.quiet_hours_applies_to)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def label(self) -> str:
        return f"{clock(self.start)}–{clock(self.end)} {self.timezone}"

    def governs(self, *, channel: str | None, sms_app: bool) -> bool:
        """Whether these quiet hours apply to an action of this channel, for an app that does or does not send SMS."""
        return self.applies_to == "all" or channel == "sms" or sms_app

    def inside(self, when: datetime) -> bool:
        local = when.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # crosses midnight

    def end_after(self, when: datetime) -> datetime:
        """The end of the quiet period ``when`` falls in, in UTC (the first moment it may go out)."""
        local = when.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        day = local.date()
        if self.start > self.end and minute >= self.start:
            day += timedelta(days=1)  # 22:00 in a 21:00–08:00 window ends tomorrow morning
        # The local wall-clock end on that day; zoneinfo applies that day's offset (a DST day's 08:00 is 08:00).
        # An end inside a spring-forward gap maps past the gap, and an ambiguous one to its first occurrence.
        end = datetime.combine(day, time(self.end // 60, self.end % 60), tzinfo=self.zone)
        return end.astimezone(UTC)

    def local(self, when: datetime) -> str:
        return when.astimezone(self.zone).strftime("%a %H:%M")


def bypass(trigger: str | None, ignore_quiet_hours: bool) -> str | None:
    """Why quiet hours do not hold this action back, if they don't: the merchant chose to send it now."""
    if ignore_quiet_hours:
        return "sent now by the merchant"
    if trigger in BYPASS_TRIGGERS:
        return "a test event"
    return None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str
    value: dict[str, Any] | None = None
    until: datetime | None = None  # when it fails: the end of the quiet period, the action's new run_at


NO_QUIET_HOURS = Verdict(True, "the store has no quiet hours")


def check(
    hours: QuietHours | None,
    when: datetime,
    *,
    channel: str | None,
    sms_app: bool,
    trigger: str | None,
    ignore_quiet_hours: bool,
) -> Verdict:
    """Quiet hours for an action due at ``when``: pass, or move it to the end of the quiet period."""
    if hours is None:
        return NO_QUIET_HOURS
    value: dict[str, Any] = {"window": hours.label, "applies_to": hours.applies_to}
    if not hours.governs(channel=channel, sms_app=sms_app):
        return Verdict(True, f"quiet hours ({hours.label}) apply to SMS only, and this is not SMS", value)
    why = bypass(trigger, ignore_quiet_hours)
    if why:
        return Verdict(True, f"{why}: quiet hours ({hours.label}) do not hold it back", {**value, "bypass": why})
    value["due_local"] = when.astimezone(hours.zone).isoformat(timespec="minutes")
    if not hours.inside(when):
        return Verdict(True, f"due {hours.local(when)} local, outside quiet hours ({hours.label})", value)
    until = hours.end_after(when)
    text = f"due {hours.local(when)} local, inside quiet hours ({hours.label}): waits until {hours.local(until)}"
    return Verdict(False, text, {**value, "until": until.isoformat()}, until)


def describe(hours: QuietHours | None) -> dict[str, Any] | None:
    """The store's quiet hours as the API shows them."""
    if hours is None:
        return None
    return {"start": clock(hours.start), "end": clock(hours.end), "applies_to": hours.applies_to}
