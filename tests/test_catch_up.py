"""When a paused or needs-attention integration resumes, a catch-up policy applies to what waited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_outbox import pending_action, sandbox, set_state


def paused_with_overdue(api: Api, rt: Runtime, hours_ago: list[float]) -> list[int]:
    """Actions held while the app was paused, each due the given number of hours ago (negative: ahead)."""
    sandbox(api)
    ids = [pending_action(api, str(n), f"c{n}@example.com")["id"] for n in range(len(hours_ago))]
    api.patch("/api/v1/integrations/sandbox", json={"state": "paused"})
    for action_id, ago in zip(ids, hours_ago, strict=True):
        set_state(rt, action_id, run_at=datetime.now(UTC) - timedelta(hours=ago))
    return ids


def actions(api: Api, ids: list[int]) -> list[dict[str, Any]]:
    return [api.get(f"/api/v1/actions/{i}").json for i in ids]


def test_resuming_delivers_everything_that_waited_by_default(api: Api, rt: Runtime) -> None:
    ids = paused_with_overdue(api, rt, [30, 1, -5])
    assert api.patch("/api/v1/integrations/sandbox", json={"state": "connected"}).status_code == 200
    found = actions(api, ids)
    assert [a["state"] for a in found] == ["pending"] * 3
    now = datetime.now(UTC)
    assert datetime.fromisoformat(found[0]["run_at"]) <= now < datetime.fromisoformat(found[2]["run_at"])


def test_skip_older_than_skips_what_was_due_too_long_ago(api: Api, rt: Runtime) -> None:
    ids = paused_with_overdue(api, rt, [30, 1, -5])
    answer = api.patch(
        "/api/v1/integrations/sandbox",
        json={"state": "connected", "catch_up": {"policy": "skip_older_than", "hours": 12}},
    )
    assert answer.status_code == 200, answer.json
    found = actions(api, ids)
    assert [(a["state"], a["reason_code"]) for a in found] == [
        ("skipped", "catch_up_skipped"),
        ("pending", None),
        ("pending", None),
    ]
    assert found[0]["caused_by"] == "merchant"


def test_spread_delivers_the_overdue_evenly_over_the_hours_given(api: Api, rt: Runtime) -> None:
    ids = paused_with_overdue(api, rt, [4, 3, 2, 1, -48])
    before = datetime.now(UTC)
    api.patch("/api/v1/integrations/sandbox", json={"state": "connected", "catch_up": {"policy": "spread", "hours": 2}})
    found = actions(api, ids)
    assert {a["state"] for a in found} == {"pending"}
    runs = [datetime.fromisoformat(a["run_at"]) - before for a in found[:4]]
    assert runs == sorted(runs)
    assert timedelta(0) <= runs[0] < timedelta(minutes=1)
    assert timedelta(minutes=89) < runs[3] - runs[0] <= timedelta(minutes=91)  # 4 actions, 30 minutes apart
    assert datetime.fromisoformat(found[4]["run_at"]) > before + timedelta(hours=47)  # its time is its own


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "connected", "catch_up": {"policy": "spread"}}, "catch_up.hours"),
        ({"state": "connected", "catch_up": {"policy": "later"}}, "catch_up.policy"),
        ({"state": "connected", "catch_up": {"policy": "spread", "hours": -1}}, "catch_up.hours"),
        ({"settings": {}, "catch_up": {"policy": "all"}}, "catch_up"),
    ],
)
def test_a_bad_catch_up_is_a_422_and_keeps_the_actions_held(api: Api, rt: Runtime, body: Any, field: str) -> None:
    ids = paused_with_overdue(api, rt, [1])
    answer = api.patch("/api/v1/integrations/sandbox", json=body)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["error"]["fields"]
    assert actions(api, ids)[0]["state"] == "held"
    assert api.get("/api/v1/integrations/sandbox").json["state"] == "paused"
