"""Many new rows at once: COPY on PostgreSQL, with their ids taken from the table's sequence first.

A multi-row INSERT ... RETURNING of a thousand rows is one statement, but its text is long and the driver
parses it on every call (too long to be cached); COPY sends rows as data. The ids come first, in one
``SELECT nextval(...) FROM generate_series(...)``, so the caller can link rows before they are written.
Elsewhere (SQLite) the same call is a multi-row INSERT ... RETURNING.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Integer, String, Table, insert, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from connectors.base import ORJSON_STRICT

MIN_ROWS = 50  # below this a multi-row INSERT is as cheap, and needs no second query for the ids

# The sequence looked up once, in a materialized CTE: written as nextval(pg_get_serial_sequence(...)) the planner
# evaluates the lookup and the text-to-regclass cast for every row, ~7 µs an id against ~1 (measured in psql, 100,000
# ids; a bulk ingest of 1,000 triggers takes 3,000).
# The ids come back as one array (one row, read by psycopg in C) rather than a row each: 1,000 rows through the result
# machinery cost more than the array.
NEXT_IDS = text(
    "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(:table, 'id')::regclass AS seq) "
    "SELECT array_agg(n.id ORDER BY n.id) FROM (SELECT nextval(s.seq) AS id FROM s, generate_series(1, :n)) AS n"
)


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (every row with the same keys, no ``id``) and return their ids, in order."""
    if not rows:
        return []
    names = list(rows[0])
    return insert_tuples(session, table, names, [tuple(map(row.__getitem__, names)) for row in rows])


def insert_tuples(
    session: Session,
    table: Table,
    names: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    json_text: Collection[str] = (),
    ids: Sequence[int] | None = None,
) -> list[int]:
    """Insert ``rows``, each the values of the columns ``names`` (no ``id``) in that order; their ids, in order.

    The values of the JSON columns named in ``json_text`` are given as JSON text already (COPY sends it as it is).
    ``ids``, when given, are the rows' ids (taken from the table's sequence beforehand); else the sequence gives them.
    """
    if not rows:
        return []
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < MIN_ROWS:
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        decoded = [position for position, name in enumerate(names) if name in json_text]
        parameters = []
        for n, row in enumerate(rows):
            values = dict(zip(names, row, strict=True))
            for position in decoded:
                if row[position] is not None:
                    values[names[position]] = json.loads(row[position])
            if ids is not None:
                values["id"] = ids[n]
            parameters.append(values)
        return list(session.execute(statement, parameters).scalars())
    taken: list[int] = (
        session.execute(NEXT_IDS, {"table": table.name, "n": len(rows)}).scalar_one() if ids is None else list(ids)
    )
    driver = connection.connection.driver_connection
    assert driver is not None
    columns = ", ".join(["id", *names])
    plan = _binary_plan(table, tuple(names), frozenset(json_text))
    if plan is None:
        _copy_text(driver, table, names, taken, rows, json_text)
        return taken
    types, converters = plan
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        _write_rows(copy, taken, rows, converters)
    return taken


def _write_rows(
    copy: Any, ids: list[int], rows: Sequence[Sequence[Any]], converters: Sequence[tuple[int, Callable[[Any], Any]]]
) -> None:
    """Each row after its id, with the values at the converters' positions (counting the id) converted."""
    write = copy.write_row
    if not converters:
        for row_id, row in zip(ids, rows, strict=True):
            write((row_id, *row))
        return
    for row_id, row in zip(ids, rows, strict=True):
        line = [row_id, *row]
        for position, convert in converters:
            value = line[position]
            if value is not None:
                line[position] = convert(value)
        write(line)


def _copy_text(
    driver: Any,
    table: Table,
    names: Sequence[str],
    ids: list[int],
    rows: Sequence[Sequence[Any]],
    json_text: Collection[str],
) -> None:
    """COPY in text form, for a table with a column type ``_binary_plan`` does not know."""
    times = IsoFormat()  # psycopg writes a datetime by isoformat too: here once per distinct time of the batch
    converters = []
    for position, name in enumerate(names, start=1):  # after the id
        convert = times if _is_datetime(table, name) else column_converter(table, name)
        if convert is not None and name not in json_text:
            converters.append((position, convert))
    columns = ", ".join(["id", *names])
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        _write_rows(copy, ids, rows, converters)


def _jsonb_binary(text: str) -> str:
    """JSON text as jsonb's binary input: its format version (1), then the text (sent as a string, UTF-8 encoded)."""
    return "\x01" + text


def _jsonb_value_binary(value: Any) -> str:
    return _jsonb_binary(json_text(value))


@functools.cache
def _binary_plan(
    table: Table, names: tuple[str, ...], json_text: frozenset[str]
) -> tuple[list[str], list[tuple[int, Callable[[Any], Any]]]] | None:
    """How to COPY the id and these columns in binary form: the type psycopg writes each value as, and the
    conversions some columns need first; None when a column's type is not one of these.

    Binary COPY leaves PostgreSQL no text to parse (a time, an integer) and psycopg formats a datetime in C. The
    server reads each field with the column's own binary input, so the checks are the same as in text form (a
    VARCHAR(n) refuses a longer value, jsonb parses its text, a string with a NUL is refused). JSON values go as the
    column's binary input (jsonb: the format version, 1, then the text; json: the text), written by psycopg as strings
    (its C dumper for text; its ``bytea`` one is Python)."""
    types = binary_types(table, ("id", *names))
    if types is None:
        return None
    converters: list[tuple[int, Callable[[Any], Any]]] = []
    for position, name in enumerate(("id", *names)):
        column_type = _postgresql_type(table, name)
        if isinstance(column_type, JSONB):
            converters.append((position, _jsonb_binary if name in json_text else _jsonb_value_binary))
        elif isinstance(column_type, JSON) and name not in json_text:  # json's binary input is its text
            converters.append((position, json.dumps))
    return list(types), converters


@functools.cache
def binary_types(table: Table, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The type psycopg writes each of these columns' values as in a binary COPY (JSON goes as text: see
    ``_binary_plan``); None when a column's type is not one it knows."""
    types = []
    for name in names:
        column_type = _postgresql_type(table, name)
        if isinstance(column_type, JSON):  # json's and jsonb's binary input take their text (jsonb after a version)
            types.append("text")
        elif isinstance(column_type, DateTime):
            types.append("timestamptz" if column_type.timezone else "timestamp")
        elif isinstance(column_type, BigInteger):
            types.append("int8")
        elif isinstance(column_type, Integer):
            types.append("int4")
        elif isinstance(column_type, Boolean):
            types.append("bool")
        elif isinstance(column_type, String):  # VARCHAR, TEXT, and enums (every enum of ours is a StrEnum)
            types.append("text")
        else:
            return None
    return tuple(types)


class IsoFormat:
    """``when.isoformat()``, each time formatted once: formatting an aware datetime costs ~12k instructions, more than
    building a dict, and the rows of a batch mostly share their times (created now, due at the same delay)."""

    def __init__(self) -> None:
        self._texts: dict[tuple[datetime, timedelta | None], str] = {}

    def __call__(self, when: datetime) -> str:
        key = (when, when.utcoffset())  # equal datetimes may differ in offset (10:00+02:00 == 08:00+00:00)
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = when.isoformat()
        return text


def _postgresql_type(table: Table, name: str) -> Any:
    """A column's type as PostgreSQL has it: its variant for PostgreSQL, and a TypeDecorator's (UTCDateTime's) own."""
    column_type = table.c[name].type
    column_type = getattr(column_type, "_variant_mapping", {}).get("postgresql", column_type)
    return getattr(column_type, "impl_instance", column_type)


def _is_datetime(table: Table, name: str) -> bool:
    return isinstance(_postgresql_type(table, name), DateTime)


def column_converter(table: Table, name: str) -> Any:
    """What a column's values need before COPY: JSON text for JSON columns (``json_text`` for jsonb); nothing for the
    rest. (An enum goes as its value: every enum of ours is a StrEnum, which psycopg writes as the string it is.)"""
    column_type = _postgresql_type(table, name)
    if isinstance(column_type, JSONB):
        return json_text
    if isinstance(column_type, JSON):
        return json.dumps
    return None


def json_text(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, default=default)`` for a jsonb column, written by orjson (~4× faster): the same JSON, which
    jsonb keeps without its whitespace or escapes. What orjson would write otherwise goes to json.dumps, but for one
    case: a float NaN or infinity, which orjson writes as null and json.dumps as NaN (which PostgreSQL refuses). The
    rows written through here are built from validated triggers, whose numbers are integers or decimals, never floats.
    """
    try:
        return orjson.dumps(value, default=default, option=ORJSON_STRICT).decode()
    except TypeError:
        return json.dumps(value, default=default)
