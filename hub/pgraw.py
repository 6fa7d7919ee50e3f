"""Statements run straight on the session's psycopg connection, for the hottest path (single-trigger ingest).

SQLAlchemy's execution of a Core statement costs several times what psycopg itself does for a small query
(looking up the compiled form by cache key, processing parameters, setting up the result): measured here, the
ingest look-ahead took ~530 µs of CPU through ``Session.execute`` and ~130 µs through the driver. These run on
the same connection and in the same transaction as the session (``session.connection()`` begins it), so the
caller commits or rolls back through the session as usual; on an autocommit session (``Database.statements``)
each commits on its own, and ``atomic`` groups those that must go together. PostgreSQL only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.orm import Session

from hub import pgcopy
from hub.db import DRIVER, Statements, unbounded

DIALECT = psycopg_dialect.dialect()


def driver(session: Session) -> Any:
    """The session's psycopg connection (beginning the session's transaction if it has none).

    A session of ``Database.statements`` (autocommit, bound to one connection) has it at hand: there is no
    transaction to begin, so the session's machinery is skipped."""
    found = session.info.get(DRIVER)
    return found if found is not None else session.connection().connection.driver_connection


def raw_cursor(work: Statements) -> psycopg.RawCursor[Any]:
    """A RawCursor on the work's driver connection, kept with that connection and used again by later work on it.

    psycopg keeps what a cursor looked up to send and read a statement (its Transformer: the dumpers of the parameters'
    types, the loaders of the result's) as long as the cursor runs the same text again, which the folded statement of
    single-trigger ingest does on every trigger; a new cursor looks them all up again (~2 % of the instructions of a
    trigger). The cursor lives in the pooled connection's ``info``, which goes with the driver connection."""
    pooled, driver = work.connection.connection, work.driver
    cursor: psycopg.RawCursor[Any] | None = pooled.info.get(RAW_CURSOR)
    if cursor is None or cursor.closed or cursor.connection is not driver:
        cursor = pooled.info[RAW_CURSOR] = psycopg.RawCursor(driver)
    return cursor


RAW_CURSOR = "hub.raw_cursor"


def atomic(session: Session) -> AbstractContextManager[Any]:
    """A transaction around statements that must be kept or lost together.

    A session of ``Database.statements`` (autocommit) commits each statement on its own: this opens a
    transaction on its driver connection (BEGIN, then COMMIT at the end of the block, or ROLLBACK on an exception).
    A session in a transaction already (``Database.session``) needs nothing more: its caller commits.
    """
    connection = driver(session)
    return connection.transaction() if connection.autocommit else nullcontext()


class RawStatement:
    """A Core statement compiled once for psycopg, run with named parameters on the driver connection.

    The statement's own constants (``Trigger.type == "review.submitted"``) are taken once from the compiled
    form; the caller gives the named bind parameters. Constants must go to the driver as they are (strings,
    numbers, arrays of them): no SQLAlchemy type conversion runs. Expanding ``IN`` lists are refused (their SQL
    is only rendered at execution): use ``hub.db.any_of``.
    """

    def __init__(self, statement: Any) -> None:
        compiled = statement.compile(dialect=DIALECT)
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:
            raise ValueError("expanding IN parameters are rendered at execution: use an array (hub.db.any_of)")
        required = {name for bind, name in compiled.bind_names.items() if bind.required}
        self.constants = {
            name: value for name, value in compiled.construct_params(_check=False).items() if name not in required
        }
        self.columns: list[str] | None = None  # the result's column names, read from the first result

    def row(self, session: Session, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row, by column name (None if there is none)."""
        with driver(session).cursor() as cursor:
            cursor.execute(self.sql, {**self.constants, **params})
            found = cursor.fetchone()
            if found is None:
                return None
            if self.columns is None:  # psycopg builds the description's objects anew on every call
                self.columns = [column.name for column in cursor.description]
            return dict(zip(self.columns, found, strict=True))


# psycopg converts a query's placeholders on every run and keeps the conversion only for a query under 4 kB and 50
# parameters: ingest's statements are longer (its write with two actions, the folded look-ahead and write), and
# converting them cost ~95 µs a trigger. Written with PostgreSQL's own placeholders ($1, $2, …), a psycopg RawCursor
# sends them as they are.


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """Positional placeholders (``%s``) as numbered ones, for a ``RawCursor``."""
    if "%%" in sql or "%(" in sql:
        raise ValueError("only %s placeholders: the text is sent as it is")
    parts = sql.split("%s")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


def numbered_by_name(sql: str) -> tuple[str, tuple[str, ...]]:
    """Named placeholders (``%(name)s``) as numbered ones, for a ``RawCursor``, and the names by number (a name
    used twice keeps its number)."""
    if "%%" in sql:
        raise ValueError("a literal % would be sent doubled: the statement is sent as it is")
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return re.sub(r"%\((\w+)\)s", number, sql), tuple(numbers)


def cast_of(table: Table, name: str) -> str:
    """The type a placeholder for this column is cast to (hub.db.unbounded): an overlong string is refused by the
    column ("value too long"), as the ORM's and COPY's writes refuse it, not cut by the cast."""
    return unbounded(table.c[name].type).compile(dialect=DIALECT)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=256)
def insert_values(table: Table, names: tuple[str, ...], rows: int = 1) -> str:
    """``INSERT INTO table (names) VALUES (%s::type, ...), ...`` for ``rows`` rows of positional parameters, each cast
    to its column's type (so a NULL or a JSON text needs no type of its own)."""
    casts = [cast_of(table, name) for name in names]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {', '.join([row] * rows)}"


@functools.lru_cache(maxsize=64)
def converters(table: Table, names: tuple[str, ...]) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """(position, conversion) for the columns whose values need one before going to the driver: JSON as text
    (pgcopy's rules, which COPY uses too)."""
    found = ((position, pgcopy.column_converter(table, name)) for position, name in enumerate(names))
    return tuple((position, convert) for position, convert in found if convert is not None)


def values(table: Table, names: tuple[str, ...], row: Sequence[Any]) -> list[Any]:
    """One row's values for ``insert_values``, converted."""
    out = list(row)
    for position, convert in converters(table, names):
        if out[position] is not None:
            out[position] = convert(out[position])
    return out
