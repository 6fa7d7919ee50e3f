"""Quiet hours: a store's night, in its own time zone, when what leads to a text message waits for the morning."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from connectors.sandbox import SandboxConnector
from hub.models import Action, Attempt, SandboxRequest
from hub.quiet import QuietHours
from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_delivery import deliver_round
from tests.test_outbox import order, review, sandbox

NEW_YORK = "America/New_York"


@pytest.fixture
def sms_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox app, declaring (as an SMS platform's connector does) that its events lead to text messages."""
    monkeypatch.setattr(SandboxConnector, "capabilities", dataclasses.replace(SandboxConnector.capabilities, sms=True))


def set_quiet_hours(api: Api, start: str, end: str, timezone: str = NEW_YORK, applies_to: str = "sms") -> None:
    answer = api.patch(
        "/api/v1/store",
        json={"timezone": timezone, "quiet_hours": {"start": start, "end": end, "applies_to": applies_to}},
    )
    assert answer.status_code == 200, answer.json


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def fulfilled_at(api: Api, due: datetime, order_id: str = "1001") -> dict[str, Any]:
    """An order fulfilled so that the default flow's review request (14 days later) falls due at ``due``."""
    created = api.post("/api/v1/triggers", json=order(order_id, occurred_at=(due - timedelta(days=14)).isoformat()))
    assert created.status_code == 202, created.json
    [action] = created.json["actions"]
    return action  # type: ignore[no-any-return]


def around_now(api: Api, applies_to: str = "sms") -> datetime:
    """Quiet hours in UTC from an hour ago to two hours ahead (whole hours): now is inside them. Returns their end."""
    now = datetime.now(UTC)
    start, end = (now.hour - 1) % 24, (now.hour + 2) % 24
    set_quiet_hours(api, f"{start:02d}:00", f"{end:02d}:00", "UTC", applies_to)
    return QuietHours("UTC", start * 60, end * 60).end_after(now)


def count(rt: Runtime, model: type) -> int:
    with rt.db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# -- the window, in the store's time zone ----------------------------------------------------------------------


def test_the_end_of_a_window_that_crosses_midnight_is_the_next_morning_local() -> None:
    hours = QuietHours(NEW_YORK, 21 * 60, 8 * 60)
    assert hours.inside(at("2027-01-12T22:30:00-05:00"))
    assert hours.inside(at("2027-01-13T07:59:00-05:00"))
    assert not hours.inside(at("2027-01-13T08:00:00-05:00")) and not hours.inside(at("2027-01-12T20:59:00-05:00"))
    assert hours.end_after(at("2027-01-12T22:30:00-05:00")) == at("2027-01-13T08:00:00-05:00")
    assert hours.end_after(at("2027-01-13T03:00:00-05:00")) == at("2027-01-13T08:00:00-05:00")


def test_a_window_within_one_day_ends_the_same_day() -> None:
    hours = QuietHours("Europe/Paris", 1 * 60, 6 * 60 + 30)
    assert not hours.inside(at("2027-01-12T00:59:00+01:00"))
    assert hours.end_after(at("2027-01-12T02:00:00+01:00")) == at("2027-01-12T06:30:00+01:00")


def test_on_the_days_the_clocks_change_the_window_still_ends_at_eight_local() -> None:
    hours = QuietHours(NEW_YORK, 21 * 60, 8 * 60)
    # Spring forward (2027-03-14): the night is an hour shorter, the morning is 08:00 EDT, 12:00 UTC.
    assert hours.end_after(at("2027-03-13T23:30:00-05:00")) == datetime(2027, 3, 14, 12, 0, tzinfo=UTC)
    assert hours.end_after(at("2027-03-12T23:30:00-05:00")) == datetime(2027, 3, 13, 13, 0, tzinfo=UTC)
    # Fall back (2027-11-07): 08:00 EST is 13:00 UTC, though the night began at 21:00 EDT (01:00 UTC).
    assert hours.end_after(at("2027-11-06T21:30:00-04:00")) == datetime(2027, 11, 7, 13, 0, tzinfo=UTC)


def test_an_end_inside_the_spring_forward_gap_is_the_first_moment_after_it() -> None:
    hours = QuietHours(NEW_YORK, 1 * 60, 2 * 60 + 30)  # 02:30 does not exist on 2027-03-14
    end = hours.end_after(at("2027-03-14T01:15:00-05:00"))
    assert end == at("2027-03-14T03:30:00-04:00") and not hours.inside(end)


# -- store settings ---------------------------------------------------------------------------------------------


def test_a_store_shows_its_time_zone_and_quiet_hours_and_can_turn_them_off(api: Api) -> None:
    shown = api.get("/api/v1/store").json
    assert shown["timezone"] == "UTC" and shown["quiet_hours"] is None and shown["name"] == "Acme"
    set_quiet_hours(api, "21:00", "08:00")
    shown = api.get("/api/v1/store").json
    assert shown["timezone"] == NEW_YORK
    assert shown["quiet_hours"] == {"start": "21:00", "end": "08:00", "applies_to": "sms"}
    assert api.patch("/api/v1/store", json={"quiet_hours": None}).json["quiet_hours"] is None
    assert api.get("/api/v1/store").json["timezone"] == NEW_YORK


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "9pm", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "21:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours.end"),
        ({"quiet_hours": {"start": "21:00", "end": "08:00", "applies_to": "email"}}, "quiet_hours.applies_to"),
    ],
)
def test_bad_store_settings_are_a_422_naming_the_field_and_change_nothing(
    api: Api, body: dict[str, Any], field: str
) -> None:
    # Sent beside a good time zone, a bad quiet hours setting leaves the time zone unchanged too.
    answer = api.patch("/api/v1/store", json={"timezone": NEW_YORK, **body})
    assert answer.status_code == 422, answer.json
    assert field in answer.json["error"]["fields"]
    assert api.get("/api/v1/store").json["timezone"] == "UTC"


# -- at scheduling ----------------------------------------------------------------------------------------------


def test_an_sms_action_due_in_quiet_hours_is_scheduled_for_their_end(api: Api, sms_app: None) -> None:
    sandbox(api)
    set_quiet_hours(api, "21:00", "08:00")
    action = fulfilled_at(api, at("2027-01-12T23:15:00-05:00"))
    assert at(action["run_at"]) == at("2027-01-13T08:00:00-05:00") == at(action["scheduled_at"])
    assert action["state"] == "pending" and action["reason_code"] == "quiet_hours"
    assert "21:00–08:00 America/New_York" in action["reason_text"]
    outside = fulfilled_at(api, at("2027-01-13T12:00:00-05:00"), order_id="1002")
    assert at(outside["run_at"]) == at("2027-01-13T12:00:00-05:00") and outside["reason_code"] is None


def test_on_the_spring_forward_day_the_action_goes_at_eight_local(api: Api, sms_app: None) -> None:
    sandbox(api)
    set_quiet_hours(api, "21:00", "08:00")
    action = fulfilled_at(api, at("2027-03-14T00:30:00-05:00"))
    assert at(action["run_at"]) == datetime(2027, 3, 14, 12, 0, tzinfo=UTC)  # 08:00 EDT, not 08:00 EST
    assert at(action["run_at"]).astimezone(ZoneInfo(NEW_YORK)).hour == 8


def test_quiet_hours_for_sms_leave_other_apps_alone_unless_they_apply_to_all(api: Api) -> None:
    sandbox(api)  # not an SMS app
    set_quiet_hours(api, "21:00", "08:00")
    due = at("2027-01-12T23:15:00-05:00")
    assert at(fulfilled_at(api, due)["run_at"]) == due
    set_quiet_hours(api, "21:00", "08:00", applies_to="all")
    assert at(fulfilled_at(api, due, order_id="1002")["run_at"]) == at("2027-01-13T08:00:00-05:00")


# -- just before delivery ---------------------------------------------------------------------------------------


def test_an_action_reaching_delivery_inside_quiet_hours_goes_back_to_wait_without_an_attempt(
    api: Api, rt: Runtime, live_server: str, sms_app: None
) -> None:
    sandbox(api)
    [action] = api.post("/api/v1/triggers", json=review()).json["actions"]  # due now, no quiet hours yet
    end = around_now(api)  # the store's quiet hours begin after it was scheduled

    assert deliver_round(rt) == 1
    after = api.get(f"/api/v1/actions/{action['id']}").json
    assert after["state"] == "pending" and after["reason_code"] == "quiet_hours"
    assert at(after["run_at"]) == end
    assert after["attempts"] == 0
    assert count(rt, Attempt) == 0 and count(rt, SandboxRequest) == 0

    explained = api.get(f"/api/v1/actions/{action['id']}/explain").json
    assert "quiet hours" in explained["summary"]
    timing = explained["timing"]["quiet_hours"]
    assert timing["applies"] is True and at(timing["waiting_until"]) == end
    assert "Waiting for the store's quiet hours" in timing["text"]


def test_a_non_sms_action_is_delivered_inside_quiet_hours_for_sms(api: Api, rt: Runtime, live_server: str) -> None:
    sandbox(api)
    around_now(api)
    [action] = api.post("/api/v1/triggers", json=review()).json["actions"]
    deliver_round(rt)
    assert api.get(f"/api/v1/actions/{action['id']}").json["state"] == "delivered"


def test_test_events_pass_quiet_hours(api: Api, rt: Runtime, live_server: str, sms_app: None) -> None:
    sandbox(api)
    around_now(api, applies_to="all")
    sent = api.post("/api/v1/integrations/sandbox/test-events", json={"target": {"email": "ada@example.com"}})
    assert sent.status_code == 202, sent.json
    deliver_round(rt)
    assert api.get(f"/api/v1/actions/{sent.json['id']}").json["state"] == "delivered"
    explained = api.get(f"/api/v1/actions/{sent.json['id']}/explain").json["timing"]["quiet_hours"]
    assert explained["applies"] is False and explained["bypass"] == "a test event"


def test_send_now_passes_quiet_hours(api: Api, rt: Runtime, live_server: str, sms_app: None) -> None:
    sandbox(api)
    around_now(api)
    [action] = api.post("/api/v1/triggers", json=review()).json["actions"]
    assert action["reason_code"] == "quiet_hours"  # moved at scheduling
    assert api.post(f"/api/v1/actions/{action['id']}/send-now").status_code == 202
    deliver_round(rt)
    assert api.get(f"/api/v1/actions/{action['id']}").json["state"] == "delivered"
    assert count(rt, SandboxRequest) == 1
    explained = api.get(f"/api/v1/actions/{action['id']}/explain").json["timing"]["quiet_hours"]
    assert explained["bypass"] == "sent now by the merchant"


# -- Explain ----------------------------------------------------------------------------------------------------


def test_explain_shows_when_quiet_hours_moved_an_action_from_the_flows_time(api: Api, sms_app: None) -> None:
    sandbox(api)
    set_quiet_hours(api, "21:00", "08:00")
    action = fulfilled_at(api, at("2027-01-12T23:15:00-05:00"))
    explained = api.get(f"/api/v1/actions/{action['id']}/explain").json
    timing = explained["timing"]
    quiet = timing["quiet_hours"]
    assert quiet["start"] == "21:00" and quiet["end"] == "08:00" and quiet["timezone"] == NEW_YORK
    assert quiet["applies"] is True and quiet["bypass"] is None
    assert at(quiet["moved_from"]) == at(timing["trigger_time"]) + timedelta(seconds=timing["delay_seconds"])
    assert at(quiet["moved_from"]) == at("2027-01-12T23:15:00-05:00")
    assert "scheduled for Wed 08:00 instead" in quiet["text"]
    [guard] = [g for g in explained["guards"] if g["code"] == "quiet_hours"]
    assert guard["passed"] and "outside quiet hours" in guard["text"]  # at its new time, nothing holds it


def test_explain_has_no_quiet_hours_for_a_store_without_them(api: Api) -> None:
    sandbox(api)
    action = fulfilled_at(api, at("2027-01-12T23:15:00-05:00"))
    explained = api.get(f"/api/v1/actions/{action['id']}/explain").json
    assert explained["timing"]["quiet_hours"] is None
    with_store_time = [g for g in explained["guards"] if g["code"] == "quiet_hours"]
    assert with_store_time[0]["text"] == "the store has no quiet hours"


def test_an_sms_action_of_a_store_without_quiet_hours_keeps_the_flows_time(
    api: Api, rt: Runtime, sms_app: None
) -> None:
    sandbox(api)
    due = at("2027-01-12T23:15:00-05:00")
    assert at(fulfilled_at(api, due)["run_at"]) == due
    with rt.db.session() as session:
        assert session.scalar(select(Action.ignore_quiet_hours)) is False
