"""Stats for a period and a filter: counts by outcome, the delivery rate, per app, and a per-day series."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, cast, func, select, union_all
from sqlalchemy.orm import Session

from hub import queries
from hub.models import Action, ActionCount, ActionState

OPEN = (ActionState.PENDING, ActionState.HELD, ActionState.QUEUED, ActionState.SENDING)
MAX_FILLED_DAYS = 400  # a series longer than this lists only the days with something in them


def _empty() -> dict[str, Any]:
    return {"sent": 0, "delivered": 0, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 0}


def _add(counts: dict[str, Any], state: str, count: int, sent: int) -> None:
    counts["sent"] += sent
    if state in OPEN or state == "open":
        counts["pending"] += count
    elif state in counts:
        counts[state] += count


def _rate(counts: dict[str, Any]) -> dict[str, Any]:
    settled = counts["delivered"] + counts["failed"]
    return {**counts, "delivery_rate": round(counts["delivered"] / settled, 4) if settled else None}


def day_of(session: Session, column: Any) -> Any:
    """The UTC calendar day of a timestamp column, as 'YYYY-MM-DD', on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Filters the counters can answer; the others (trigger_type, order_id, customer, q, dates by scheduled or updated
# time) read the actions themselves, through their own indexes.
COUNTED_FILTERS = {"state", "kind", "app", "trigger", "flow", "caused_by", "date_from", "date_to", "date_by"}
Row = tuple[str | None, str, str, int, int]  # app, day, state (or bucket), count, sent


def stats(session: Session, store_id: int, f: dict[str, Any], *, counters: bool = True) -> dict[str, Any]:
    """Counts by outcome for a period and filter, per app and per UTC day. Whole hours are read from the
    counters (hub.counters) when the filter allows it; the rest of the period from the actions."""
    read = _from_counters if counters and _countable(f) else _from_actions
    rows = read(session, store_id, f)
    total = _empty()
    by_app: dict[str, dict[str, Any]] = defaultdict(_empty)
    by_day: dict[str, dict[str, Any]] = defaultdict(_empty)
    for app, when, state, count, sent_count in rows:
        for bucket in (total, by_app[app or "-"], by_day[when]):
            _add(bucket, state, count, sent_count)
    if f.get("date_from") and f.get("date_to"):
        first, last = f["date_from"].date(), (f["date_to"] - timedelta(microseconds=1)).date()
        if 0 <= (last - first).days < MAX_FILLED_DAYS:
            for n in range((last - first).days + 1):
                by_day.setdefault((first + timedelta(days=n)).isoformat(), _empty())  # empty days show too
    series = [{"date": d, **_rate(c)} for d, c in sorted(by_day.items()) if _is_day(d)]
    return {**_rate(total), "by_app": {a: _rate(c) for a, c in sorted(by_app.items())}, "series": series}


def _from_actions(session: Session, store_id: int, f: dict[str, Any]) -> list[Row]:
    column = queries.DATE_COLUMNS[f.get("date_by") or "created"]
    day = day_of(session, column).label("day")
    sent = func.sum(case((Action.attempt_count > 0, 1), else_=0))
    found = session.execute(
        select(Action.app, day, Action.state, func.count(), sent)
        .where(*queries.conditions(store_id, f))
        .group_by(Action.app, day, Action.state)
    ).all()
    return [(app, str(when), state, count, int(sent_count or 0)) for app, when, state, count, sent_count in found]


def _buckets(states: list[str] | str | None) -> list[str] | None:
    """The counter buckets a state filter selects, or None when it splits the open bucket."""
    if not states:
        return None
    wanted = set(states if isinstance(states, list) else [states])
    opened = wanted & set(OPEN)
    if opened and opened != set(OPEN):
        raise ValueError("part of the open states")
    return sorted((wanted - set(OPEN)) | ({"open"} if opened else set()))


def _countable(f: dict[str, Any]) -> bool:
    if any(f.get(name) for name in f.keys() - COUNTED_FILTERS) or (f.get("date_by") or "created") != "created":
        return False
    try:
        _buckets(f.get("state"))
    except ValueError:
        return False
    return True


def _hour(at: datetime) -> int:
    return (at - EPOCH) // HOUR


def _day_number(session: Session) -> Any:
    """Days since the epoch (UTC) of an action's creation, as an integer, on PostgreSQL and SQLite alike."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", Action.created_at) / 86400), Integer)
    return cast(func.strftime("%s", Action.created_at), Integer) // 86400


def _from_counters(session: Session, store_id: int, f: dict[str, Any]) -> list[Row]:
    """Whole hours from the counters; a period's partial first and last hours from the actions. One query."""
    start, end = f.get("date_from"), f.get("date_to")
    first = None if start is None else -(-(start - EPOCH) // HOUR)  # the first whole hour
    last = None if end is None else _hour(end)  # the hour after the last whole one
    if first is not None and last is not None and first >= last:  # not one whole hour: the actions are cheap
        return _from_actions(session, store_id, f)
    edges = []
    if start is not None and first is not None and EPOCH + first * HOUR > start:
        edges.append({**f, "date_to": EPOCH + first * HOUR})
    if end is not None and last is not None and EPOCH + last * HOUR < end:
        edges.append({**f, "date_from": EPOCH + last * HOUR})
    day = _day_number(session)
    parts = [
        select(Action.app, day, Action.state, func.count(), func.sum(case((Action.attempt_count > 0, 1), else_=0)))
        .where(*queries.conditions(store_id, edge))
        .group_by(Action.app, day, Action.state)
        for edge in edges
    ]
    c = ActionCount
    where = [c.store_id == store_id]
    if first is not None:
        where.append(c.hour >= first)
    if last is not None:
        where.append(c.hour < last)
    buckets = _buckets(f.get("state"))
    if buckets:
        where.append(c.bucket.in_(buckets))
    for name in ("kind", "app", "trigger", "caused_by"):
        if f.get(name):
            where.append(getattr(c, name) == f[name])
    if f.get("flow"):
        where.append(c.flow_id == f["flow"])
    counted_day = c.hour // 24
    count = func.sum(c.count)
    parts.append(
        select(c.app, counted_day, c.bucket, count, func.sum(case((c.sent, c.count), else_=0)))
        .where(*where)
        .group_by(c.app, counted_day, c.bucket)
        .having(count != 0)
    )
    found = session.execute(union_all(*parts) if len(parts) > 1 else parts[0]).all()
    return [
        (app or None, (EPOCH.date() + timedelta(days=int(n))).isoformat(), state, int(count), int(sent or 0))
        for app, n, state, count, sent in found
    ]


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
