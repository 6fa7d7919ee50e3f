"""`hub outbox …`: what a support person runs, with clear messages for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from hub import bulk
from hub.cli import main
from hub.models import AuditEntry
from hub.runtime import Runtime
from tests.conftest import Api
from tests.test_cli import env_for
from tests.test_outbox import pending_action, sandbox, set_state


class Hub:
    def __init__(self, rt: Runtime) -> None:
        self.runner, self.env = CliRunner(), env_for(rt)

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(main, list(args), env=self.env, catch_exceptions=False)


@pytest.fixture
def hub(rt: Runtime) -> Hub:
    return Hub(rt)


def state_of(api: Api, action_id: int) -> str:
    return api.get(f"/api/v1/actions/{action_id}").json["state"]  # type: ignore[no-any-return]


def test_the_queue_is_listed_and_one_action_is_delayed_cancelled_restored_and_explained(hub: Hub, api: Api) -> None:
    sandbox(api)
    action = pending_action(api)
    store = str(api.tenant.store.id)
    listed = hub("outbox", "list", "--store", store)
    assert listed.exit_code == 0 and str(action["id"]) in listed.output and "ada@example.com" in listed.output
    delayed = hub("outbox", "delay", "--store", store, str(action["id"]), "--days", "2")
    assert delayed.exit_code == 0, delayed.output
    assert hub("outbox", "cancel", "--store", store, str(action["id"]), "--reason", "phoned").exit_code == 0
    assert state_of(api, action["id"]) == "cancelled"
    assert "cancelled" in hub("outbox", "list", "--store", store, "--view", "incomplete").output
    assert hub("outbox", "restore", "--store", store, str(action["id"])).exit_code == 0
    explained = hub("outbox", "explain", "--store", store, str(action["id"]))
    assert "Waiting in the Queue" in explained.output and "ok" in explained.output
    audit = hub("outbox", "audit", "--store", store).output
    assert audit.count("cli") == 3 and "restore" in audit


def test_operations_in_the_wrong_state_or_on_unknown_actions_are_messages(hub: Hub, api: Api, rt: Runtime) -> None:
    sandbox(api)
    action = pending_action(api)
    set_state(rt, action["id"], state="delivered")
    store = str(api.tenant.store.id)
    wrong = hub("outbox", "cancel", "--store", store, str(action["id"]))
    assert wrong.exit_code != 0 and "is delivered" in wrong.output
    unknown = hub("outbox", "send-now", "--store", store, "999999")
    assert unknown.exit_code != 0 and "No action 999999" in unknown.output
    assert "no store 999999" in hub("outbox", "list", "--store", "999999").output
    bad = hub("outbox", "delay", "--store", store, str(action["id"]))
    assert bad.exit_code != 0 and "days or until" in bad.output
    assert "state" in hub("outbox", "list", "--store", store, "--filter", "state=lost").output
    assert hub("outbox", "bulk", "cancel", "--store", store).exit_code != 0


def test_a_bulk_cancel_by_filter_shows_a_progress_bar_and_can_be_undone(
    hub: Hub,
    api: Api,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk, "CHUNK", 2)
    sandbox(api)
    ids = [pending_action(api, str(n), f"c{n}@example.com")["id"] for n in range(5)]
    store = str(api.tenant.store.id)
    dry = hub("outbox", "bulk", "cancel", "--store", store, "--filter", "state=pending", "--dry-run")
    assert dry.exit_code == 0 and "cancel: 5 actions (sandbox: 5)" in dry.output
    assert {state_of(api, i) for i in ids} == {"pending"}
    done = hub("outbox", "bulk", "cancel", "--store", store, "--filter", "state=pending", "--yes")
    assert done.exit_code == 0, done.output
    assert "5 of 5 changed" in done.output
    assert {state_of(api, i) for i in ids} == {"cancelled"}
    op_id = done.output.split("bulk operation ")[1].split(":")[0]
    undone = hub("outbox", "undo", "--store", store, op_id)
    assert undone.exit_code == 0 and "5 actions restored" in undone.output
    with rt.db.session() as session:
        assert {e.actor for e in session.scalars(select(AuditEntry))} == {"cli"}


def test_a_bulk_operation_from_a_file_reports_the_rows_that_matched_nothing(hub: Hub, api: Api, tmp_path: Path) -> None:
    sandbox(api)
    action = pending_action(api, "A-1")
    listing = tmp_path / "list.csv"
    listing.write_text("ada@example.com\nnobody@example.com\n")
    result = hub("outbox", "bulk", "cancel", "--store", str(api.tenant.store.id), "--file", str(listing), "--yes")
    assert result.exit_code == 0, result.output
    assert "row 2 matched nothing: nobody@example.com" in result.output
    assert state_of(api, action["id"]) == "cancelled"
