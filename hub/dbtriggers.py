"""Database triggers kept as named sets (on ``actions``: the counters', hub.counters; the open actions',
hub.open_actions; the references kept by triggers, hub.cascades, on ``actions`` and on the tables it points to):
dropped and looked up by name on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, text


def is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def drop(connection: Connection, names: Iterable[str], on: str = "actions") -> None:
    """Drop the named triggers of the table ``on`` (and, on PostgreSQL, their functions), those that exist."""
    for name in names:
        if is_postgresql(connection):
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {on}"))
            connection.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))
        else:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))


def present(connection: Connection, names: Iterable[str], on: str = "actions") -> set[str]:
    """Which of the named triggers the table ``on`` has."""
    if is_postgresql(connection):
        query = "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:on AS regclass) AND NOT tgisinternal"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :on"
    return {name for (name,) in connection.execute(text(query), {"on": on})} & set(names)


def install(
    connection: Connection,
    names: Iterable[str],
    *,
    postgresql: Sequence[str],
    sqlite: Sequence[str],
    table: str,
    backfill: str | None,
    on: str = "actions",
) -> None:
    """Drop the named triggers and create them anew (``postgresql`` or ``sqlite``: the statements that do), and
    with ``backfill`` empty ``table`` and fill it by that statement. Run it in the migration's transaction: on
    PostgreSQL CREATE TRIGGER locks writers of ``actions`` out until it commits, so no change is missed or applied
    twice."""
    drop(connection, names, on)
    if backfill is not None:
        connection.execute(text(f"DELETE FROM {table}"))
    for statement in postgresql if is_postgresql(connection) else sqlite:
        connection.execute(text(statement))
    if backfill is not None:
        connection.execute(text(backfill))
