"""Many new rows at once: COPY on PostgreSQL, with their ids taken from the table's sequence first.

A multi-row INSERT ... RETURNING of a thousand rows is one statement, but its text is long and the driver
parses it on every call (too long to be cached); COPY sends rows as data. The ids come first, in one
``SELECT nextval(...) FROM generate_series(...)``, so the caller can link rows before they are written.
Elsewhere (SQLite) the same call is a multi-row INSERT ... RETURNING.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Enum, String, Table, insert, text
from sqlalchemy.orm import Session

MIN_ROWS = 50  # below this a multi-row INSERT is as cheap, and needs no second query for the ids

# The sequence looked up once, in a materialized CTE: written as nextval(pg_get_serial_sequence(...)) the planner
# evaluates the lookup and the text-to-regclass cast for every row, ~7 µs an id against ~1 (measured in psql, 100,000
# ids; a bulk ingest of 1,000 triggers takes 3,000).
NEXT_IDS = text(
    "WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence(:table, 'id')::regclass AS seq) "
    "SELECT nextval(s.seq) FROM s, generate_series(1, :n)"
)


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (every row with the same keys, no ``id``) and return their ids, in order."""
    if not rows:
        return []
    names = list(rows[0])
    return insert_tuples(session, table, names, [tuple(row[n] for n in names) for row in rows])


def insert_tuples(session: Session, table: Table, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[int]:
    """Insert ``rows``, each the values of the columns ``names`` (no ``id``) in that order; their ids, in order."""
    if not rows:
        return []
    connection = session.connection()
    if connection.dialect.name != "postgresql" or len(rows) < MIN_ROWS:
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.execute(statement, [dict(zip(names, row, strict=True)) for row in rows]).scalars())
    ids = list(session.execute(NEXT_IDS, {"table": table.name, "n": len(rows)}).scalars())
    converters = [(position, column_converter(table, name)) for position, name in enumerate(names)]
    converters = [(position, convert) for position, convert in converters if convert is not None]
    driver = connection.connection.driver_connection
    assert driver is not None
    columns = ", ".join(["id", *names])
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for row_id, row in zip(ids, rows, strict=True):
            values = [row_id, *row]
            for position, convert in converters:
                value = values[position + 1]
                if value is not None:
                    values[position + 1] = convert(value)
            copy.write_row(values)
    return ids


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value  # a StrEnum goes as its value, not its name


def column_converter(table: Table, name: str) -> Any:
    """What a column's values need before COPY: JSON text for JSON columns, an enum's value for string columns
    (psycopg would send an Enum's name); nothing for the rest."""
    column_type = table.c[name].type
    variant = getattr(column_type, "_variant_mapping", {}).get("postgresql", column_type)
    if variant.__class__.__name__ in ("JSON", "JSONB"):
        return json.dumps
    if isinstance(variant, (String, Enum)):  # Text is a String
        return _enum_value
    return None
