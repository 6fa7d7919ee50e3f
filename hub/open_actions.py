"""The open actions (the ``open_actions`` table, hub.models.OpenAction) kept by database triggers on ``actions``.

The outbox's scans (due actions, lost leases, the Queue, an integration's waiting actions) read this narrow
table instead of indexes on ``actions``: with no index of ``actions`` naming state, run_at or lease_expires_at,
a claim and an outcome rewrite the action row without a new entry in any of its indexes (a HOT update on
PostgreSQL, given room on the page: migration 0011 sets fillfactor 50).

Triggers keep it rather than the code paths that write actions for the reason the counters are kept that way
(hub.counters): every path must keep it exact (ingest, claims, outcomes, operations, bulk SQL, the bench's
seeding, a store's deletion) and a trigger cannot be forgotten by the next one. They run in the writer's
transaction, so the table says exactly what the committed actions say:

- an action inserted in an open state gets its row; one inserted closed gets none;
- an update that closes an action deletes its row, one that reopens it (a retry, a release, a restore, a replay)
  inserts it, and one that changes run_at, state, lease_expires_at or integration_id of an open action updates it;
- a deleted action takes its row with it.

On PostgreSQL the triggers are per statement with transition tables (a claim or an outcome of 1,000 actions is
one statement here too); SQLite has only row triggers, guarded by WHENs. A migration that copies ``actions`` on
SQLite (batch mode) drops its triggers: it must call ``install`` again, as it must ``counters.install``
(tests/test_migrations.py checks both sets exist at head).
"""

from __future__ import annotations

from sqlalchemy import Connection

from hub import dbtriggers
from hub.counters import OPEN_STATES_SQL

TRIGGER_NAMES = ("open_actions_insert", "open_actions_update", "open_actions_delete")
COLUMNS = "action_id, store_id, integration_id, run_at, state, lease_expires_at"
# What a row of open_actions holds of an actions row, in COLUMNS order; the columns an update must follow.
_VALUES = ("id", "store_id", "integration_id", "run_at", "state", "lease_expires_at")
_FOLLOWED = ("store_id", "integration_id", "run_at", "state", "lease_expires_at")


def _values(row: str) -> str:
    return ", ".join(f"{row}.{name}" for name in _VALUES)


def _set(row: str) -> str:
    return ", ".join(f"{name} = {row}.{name}" for name in _FOLLOWED)


def _tuple(row: str) -> str:
    return "(" + ", ".join(f"{row}.{name}" for name in _FOLLOWED) + ")"


POSTGRESQL = [
    f"""
    CREATE FUNCTION open_actions_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO open_actions ({COLUMNS})
        SELECT {_values("n")} FROM new_rows n WHERE n.state IN {OPEN_STATES_SQL};
        RETURN NULL;
    END $$""",
    # Closed: out. Still open and something followed differs from its row: updated. Open without a row (reopened):
    # in. Each statement joins the new rows to open_actions by its key, never to old_rows: PostgreSQL plans a join
    # of two transition tables as a nested loop (it counts one row in each), a million comparisons for a claim of
    # 1,000. The row in open_actions is the old one's projection, so comparing with it says what changed.
    f"""
    CREATE FUNCTION open_actions_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM open_actions x USING new_rows n
        WHERE x.action_id = n.id AND n.state NOT IN {OPEN_STATES_SQL};
        UPDATE open_actions x SET {_set("n")}
        FROM new_rows n
        WHERE x.action_id = n.id AND n.state IN {OPEN_STATES_SQL} AND {_tuple("x")} IS DISTINCT FROM {_tuple("n")};
        INSERT INTO open_actions ({COLUMNS})
        SELECT {_values("n")} FROM new_rows n
        WHERE n.state IN {OPEN_STATES_SQL} AND NOT EXISTS (SELECT FROM open_actions x WHERE x.action_id = n.id);
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION open_actions_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM open_actions x USING old_rows o WHERE x.action_id = o.id AND o.state IN {OPEN_STATES_SQL};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER open_actions_insert AFTER INSERT ON actions REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION open_actions_insert()""",
    """CREATE TRIGGER open_actions_update AFTER UPDATE ON actions REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION open_actions_update()""",
    """CREATE TRIGGER open_actions_delete AFTER DELETE ON actions REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION open_actions_delete()""",
]

_OPEN = f"NEW.state IN {OPEN_STATES_SQL}"
_WAS_OPEN = f"OLD.state IN {OPEN_STATES_SQL}"
_CHANGED = " OR ".join(f"OLD.{name} IS NOT NEW.{name}" for name in _FOLLOWED)

# SQLite has row triggers only: one per case, each guarded by a WHEN (an update of other columns fires none).
SQLITE = [
    f"""CREATE TRIGGER open_actions_insert AFTER INSERT ON actions WHEN {_OPEN} BEGIN
        INSERT INTO open_actions ({COLUMNS}) VALUES ({_values("NEW")});
    END""",
    f"""CREATE TRIGGER open_actions_update AFTER UPDATE ON actions WHEN {_WAS_OPEN} OR {_OPEN} BEGIN
        DELETE FROM open_actions WHERE action_id = OLD.id AND NOT ({_OPEN});
        INSERT INTO open_actions ({COLUMNS}) SELECT {_values("NEW")} WHERE {_OPEN} AND NOT ({_WAS_OPEN});
        UPDATE open_actions SET {_set("NEW")}
        WHERE action_id = NEW.id AND ({_OPEN}) AND ({_WAS_OPEN}) AND ({_CHANGED});
    END""",
    f"""CREATE TRIGGER open_actions_delete AFTER DELETE ON actions WHEN {_WAS_OPEN} BEGIN
        DELETE FROM open_actions WHERE action_id = OLD.id;
    END""",
]

BACKFILL = (
    f"INSERT INTO open_actions ({COLUMNS}) SELECT {_values('a')} FROM actions a WHERE a.state IN {OPEN_STATES_SQL}"
)


def install(connection: Connection, *, backfill: bool = True) -> None:
    """Create the triggers (dropping any old ones) and, with ``backfill``, fill the table from the open actions,
    in the migration's transaction (hub.dbtriggers.install)."""
    dbtriggers.install(
        connection,
        TRIGGER_NAMES,
        postgresql=POSTGRESQL,
        sqlite=SQLITE,
        table="open_actions",
        backfill=BACKFILL if backfill else None,
    )


def uninstall(connection: Connection) -> None:
    dbtriggers.drop(connection, TRIGGER_NAMES)


def installed(connection: Connection) -> set[str]:
    """The open-actions triggers present on ``actions``."""
    return dbtriggers.present(connection, TRIGGER_NAMES)
