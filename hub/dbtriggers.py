"""Database triggers on ``actions`` kept as named sets (the counters', hub.counters; the open actions',
hub.open_actions): dropped and looked up by name on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text


def is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def drop(connection: Connection, names: Iterable[str]) -> None:
    """Drop the named triggers of ``actions`` (and, on PostgreSQL, their functions), those that exist."""
    for name in names:
        if is_postgresql(connection):
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name} ON actions"))
            connection.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))
        else:
            connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))


def present(connection: Connection, names: Iterable[str]) -> set[str]:
    """Which of the named triggers ``actions`` has."""
    if is_postgresql(connection):
        query = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'actions'::regclass AND NOT tgisinternal"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'actions'"
    return {name for (name,) in connection.execute(text(query))} & set(names)
