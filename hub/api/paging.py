"""Keyset pagination for the API's lists, newest first by id: pages stay stable while new rows arrive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, Select, bindparam

from hub.api import db_session
from schemas.common import encode_cursor


def keyset(statement: Select[Any], id_column: Any, query: dict[str, Any]) -> Select[Any]:
    """The statement for one page after ``query["cursor"]``, with one row more than the page to see whether
    another follows (``cut``)."""
    if query.get("cursor"):
        statement = statement.where(id_column < query["cursor"])
    return statement.order_by(id_column.desc()).limit(query["limit"] + 1)


def named_keyset(statement: Select[Any], id_column: Any, cursor: bool) -> Select[Any]:
    """``keyset``'s statement with the cursor and the limit as parameters (``keyset_parameters``), for a statement
    made once and run again for other pages."""
    if cursor:
        statement = statement.where(id_column < bindparam("cursor"))
    return statement.order_by(id_column.desc()).limit(bindparam("limit", type_=Integer))


def keyset_parameters(query: dict[str, Any]) -> dict[str, Any]:
    """The values of ``named_keyset``'s parameters for one page."""
    if query.get("cursor"):
        return {"cursor": query["cursor"], "limit": query["limit"] + 1}
    return {"limit": query["limit"] + 1}


def cut(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """The page, and the cursor of the next one if there is one."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


def page_of(statement: Select[Any], model: Any, query: dict[str, Any]) -> dict[str, Any]:
    """A page of ``model`` objects, as the list answers carry it: ``data`` and ``next_cursor``."""
    rows = db_session().scalars(keyset(statement, model.id, query)).all()
    data, cursor = cut(list(rows), query["limit"])
    return {"data": data, "next_cursor": cursor}
