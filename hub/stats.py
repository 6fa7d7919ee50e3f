"""Stats for a period and a filter: counts by outcome, the delivery rate, per app, and a per-day series."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from hub import queries
from hub.models import Action, ActionState

OPEN = (ActionState.PENDING, ActionState.HELD, ActionState.QUEUED, ActionState.SENDING)
MAX_FILLED_DAYS = 400  # a series longer than this lists only the days with something in them


def _empty() -> dict[str, Any]:
    return {"sent": 0, "delivered": 0, "failed": 0, "pending": 0, "skipped": 0, "cancelled": 0}


def _add(counts: dict[str, Any], state: str, count: int, sent: int) -> None:
    counts["sent"] += sent
    if state in OPEN:
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


def stats(session: Session, store_id: int, f: dict[str, Any]) -> dict[str, Any]:
    column = queries.DATE_COLUMNS[f.get("date_by") or "created"]
    day = day_of(session, column).label("day")
    sent = func.sum(case((Action.attempt_count > 0, 1), else_=0))
    rows = session.execute(
        select(Action.app, day, Action.state, func.count(), sent)
        .where(*queries.conditions(store_id, f))
        .group_by(Action.app, day, Action.state)
    ).all()
    total = _empty()
    by_app: dict[str, dict[str, Any]] = defaultdict(_empty)
    by_day: dict[str, dict[str, Any]] = defaultdict(_empty)
    for app, when, state, count, sent_count in rows:
        for bucket in (total, by_app[app or "-"], by_day[str(when)]):
            _add(bucket, state, count, int(sent_count or 0))
    if f.get("date_from") and f.get("date_to"):
        first, last = f["date_from"].date(), (f["date_to"] - timedelta(microseconds=1)).date()
        if 0 <= (last - first).days < MAX_FILLED_DAYS:
            for n in range((last - first).days + 1):
                by_day.setdefault((first + timedelta(days=n)).isoformat(), _empty())  # empty days show too
    series = [{"date": d, **_rate(c)} for d, c in sorted(by_day.items()) if _is_day(d)]
    return {**_rate(total), "by_app": {a: _rate(c) for a, c in sorted(by_app.items())}, "series": series}


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
