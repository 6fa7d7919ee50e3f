"""Counters of actions (the ``action_counts`` table) kept by database triggers, and their compaction.

Stats over a long period read these instead of every action (hub.stats). Triggers keep them rather than the
code paths that write actions because every path must count — flows, deliveries, operations, bulk SQL, the
bench's seeding — and a trigger cannot be forgotten by the next one. They run in the writer's transaction,
so a counter is exactly as committed as the change it counts.

A trigger never updates a counter row: it appends signed rows (+1 for the row's new key, −1 for its old
one), so two workers delivering for the same store and hour never wait on each other or deadlock. On
PostgreSQL the triggers are per statement (one grouped INSERT per UPDATE of a whole batch; a claim that only
moves pending → sending nets to nothing and writes nothing); SQLite has only row triggers, guarded by a WHEN
that compares the keys. ``compact`` folds the appended rows into one settled row per key; the dispatcher
runs it every minute. A key's count is always the sum of its rows, settled or not.

The migration that creates the table (0005) installs the triggers with ``install``. SQLite drops a table's
triggers when a batch migration copies the table: a later migration that alters ``actions`` on SQLite
must call ``install`` again (tests/test_migrations.py checks they exist at head).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, delete, insert, select, tuple_
from sqlalchemy.orm import Session

from hub import dbtriggers
from hub.models import ActionCount

OPEN_STATES_SQL = "('pending', 'held', 'queued', 'sending')"
KEY = ("store_id", "hour", "app", "kind", "trigger", "flow_id", "bucket", "caused_by", "sent")
TRIGGER_NAMES = ("action_counts_insert", "action_counts_update", "action_counts_delete")
COMPACT_KEYS = 2000  # keys folded per transaction


def _key(row: str, hour: str) -> list[str]:
    """The counter key of an actions row, as SQL expressions in KEY order."""
    return [
        f"{row}.store_id",
        hour.format(r=row),
        f"coalesce({row}.app, '')",
        f"{row}.kind",
        f"{row}.trigger",
        f"coalesce({row}.flow_id, 0)",
        f"CASE WHEN {row}.state IN {OPEN_STATES_SQL} THEN 'open' ELSE {row}.state END",
        f"coalesce({row}.caused_by, '')",
        f"{row}.attempt_count > 0",
    ]


COLUMNS = ", ".join(KEY)
PG_HOUR = "(floor(extract(epoch FROM {r}.created_at) / 3600))::integer"
SQLITE_HOUR = "CAST(strftime('%s', {r}.created_at) AS INTEGER) / 3600"
GROUP = "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"


def _pg_key(row: str) -> str:
    return ", ".join(_key(row, PG_HOUR))


def _sqlite_key(row: str) -> str:
    return ", ".join(_key(row, SQLITE_HOUR))


POSTGRESQL = [
    f"""
    CREATE FUNCTION action_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO action_counts ({COLUMNS}, count, settled)
        SELECT {_pg_key("n")}, count(*), false FROM new_rows n {GROUP};
        RETURN NULL;
    END $$""",
    f"""
    CREATE FUNCTION action_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO action_counts ({COLUMNS}, count, settled)
        SELECT {COLUMNS}, sum(delta), false FROM (
            SELECT {_pg_key("o")}, -1 AS delta FROM old_rows o
            UNION ALL
            SELECT {_pg_key("n")}, 1 AS delta FROM new_rows n
        ) AS d ({COLUMNS}, delta)
        {GROUP} HAVING sum(delta) <> 0;
        RETURN NULL;
    END $$""",
    # A store being deleted takes its counters with it (cascade): nothing to count for it then.
    f"""
    CREATE FUNCTION action_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO action_counts ({COLUMNS}, count, settled)
        SELECT {_pg_key("o")}, -count(*), false FROM old_rows o
        WHERE EXISTS (SELECT 1 FROM stores s WHERE s.id = o.store_id) {GROUP};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER action_counts_insert AFTER INSERT ON actions REFERENCING NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION action_counts_insert()""",
    """CREATE TRIGGER action_counts_update AFTER UPDATE ON actions
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
       FOR EACH STATEMENT EXECUTE FUNCTION action_counts_update()""",
    """CREATE TRIGGER action_counts_delete AFTER DELETE ON actions REFERENCING OLD TABLE AS old_rows
       FOR EACH STATEMENT EXECUTE FUNCTION action_counts_delete()""",
]

# Only a change of key counts (store_id never changes); a claim (pending → sending) fires nothing.
_CHANGED = " OR ".join(
    f"({old}) IS NOT ({new})"
    for old, new in zip(_key("OLD", SQLITE_HOUR)[1:], _key("NEW", SQLITE_HOUR)[1:], strict=True)
)

SQLITE = [
    f"""CREATE TRIGGER action_counts_insert AFTER INSERT ON actions BEGIN
        INSERT INTO action_counts ({COLUMNS}, count, settled) VALUES ({_sqlite_key("NEW")}, 1, 0);
    END""",
    f"""CREATE TRIGGER action_counts_update AFTER UPDATE ON actions WHEN {_CHANGED} BEGIN
        INSERT INTO action_counts ({COLUMNS}, count, settled)
        VALUES ({_sqlite_key("OLD")}, -1, 0), ({_sqlite_key("NEW")}, 1, 0);
    END""",
    f"""CREATE TRIGGER action_counts_delete AFTER DELETE ON actions
        WHEN EXISTS (SELECT 1 FROM stores WHERE id = OLD.store_id) BEGIN
        INSERT INTO action_counts ({COLUMNS}, count, settled) VALUES ({_sqlite_key("OLD")}, -1, 0);
    END""",
]

BACKFILL = {
    "postgresql": f"INSERT INTO action_counts ({COLUMNS}, count, settled) "
    f"SELECT {_pg_key('a')}, count(*), true FROM actions a {GROUP}",
    "sqlite": f"INSERT INTO action_counts ({COLUMNS}, count, settled) "
    f"SELECT {_sqlite_key('a')}, count(*), 1 FROM actions a {GROUP}",
}


def install(connection: Connection, *, backfill: bool = True) -> None:
    """Create the triggers (dropping any old ones) and, with ``backfill``, count what is already there, in the
    migration's transaction (hub.dbtriggers.install)."""
    dbtriggers.install(
        connection,
        TRIGGER_NAMES,
        postgresql=POSTGRESQL,
        sqlite=SQLITE,
        table="action_counts",
        backfill=BACKFILL[connection.dialect.name] if backfill else None,
    )


def uninstall(connection: Connection) -> None:
    dbtriggers.drop(connection, TRIGGER_NAMES)


def installed(connection: Connection) -> set[str]:
    """The counter triggers present on ``actions``."""
    return dbtriggers.present(connection, TRIGGER_NAMES)


def compact(session: Session, keys: int = COMPACT_KEYS) -> int:
    """Fold the rows the triggers appended into one settled row per key (dropping keys that sum to zero),
    up to ``keys`` keys, in the session's transaction. Returns how many keys it folded.

    Exact beside writers and other compactions: it sums exactly the rows its DELETE … RETURNING removed.
    Rows a writer has not committed yet are invisible to it and stay for the next round; rows another
    compaction removed first are skipped by this one's DELETE."""
    columns = [getattr(ActionCount, name) for name in KEY]
    found = [
        tuple(row)
        for row in session.execute(select(*columns).where(ActionCount.settled.is_(False)).distinct().limit(keys))
    ]
    if not found:
        return 0
    sums: dict[tuple[Any, ...], int] = defaultdict(int)
    for start in range(0, len(found), 500):
        removed = session.execute(
            delete(ActionCount)
            .where(tuple_(*columns).in_(found[start : start + 500]))
            .returning(*columns, ActionCount.count)
            .execution_options(synchronize_session=False)
        ).all()
        for row in removed:
            sums[tuple(row[:-1])] += row[-1]
    rows = [{**dict(zip(KEY, key, strict=True)), "count": n, "settled": True} for key, n in sums.items() if n]
    if rows:
        session.execute(insert(ActionCount), rows)
    return len(found)


def compact_all(session: Session) -> int:
    """Compact until nothing is left unsettled (one transaction per round). Returns the keys folded."""
    total = 0
    while True:
        folded = compact(session)
        session.commit()
        total += folded
        if folded < COMPACT_KEYS:
            return total
