"""Stats and exports over the shared filter."""

from __future__ import annotations

import csv
import io
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import openpyxl
import pytest
from sqlalchemy import update

from hub import export
from hub.models import Action
from hub.runtime import Runtime
from tests.conftest import Api, make_tenant
from tests.test_outbox import pending_action, review, sandbox, set_state


def test_stats_count_outcomes_with_the_delivery_rate_per_app_and_per_day(api: Api, rt: Runtime) -> None:
    sandbox(api)
    ids = [pending_action(api, str(n), f"c{n}@example.com")["id"] for n in range(5)]
    # Fixed creation times, not "now": a test running across midnight must not move actions between days.
    today = datetime.now(UTC).date() - timedelta(days=10)
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC)
    set_state(rt, ids[0], state="delivered", attempt_count=1, created_at=noon)
    set_state(rt, ids[1], state="delivered", attempt_count=2, created_at=noon)
    set_state(rt, ids[2], state="failed", attempt_count=3, created_at=noon)
    set_state(rt, ids[3], state="skipped", created_at=noon)
    yesterday = noon - timedelta(days=1)
    set_state(rt, ids[4], created_at=yesterday)

    start = datetime(yesterday.year, yesterday.month, yesterday.day, tzinfo=UTC)
    answer = api.get(
        "/api/v1/stats", query_string={"from": start.isoformat(), "to": (start + timedelta(days=3)).isoformat()}
    )
    assert answer.status_code == 200, answer.json
    body = answer.json
    assert (body["sent"], body["delivered"], body["failed"], body["pending"], body["skipped"]) == (3, 2, 1, 1, 1)
    assert body["delivery_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert body["by_app"]["sandbox"]["delivered"] == 2
    series = {d["date"]: d for d in body["series"]}
    assert len(series) == 3  # every day of the period, the empty one too
    assert series[today.isoformat()]["delivered"] == 2
    assert series[yesterday.date().isoformat()]["pending"] == 1
    assert series[(today + timedelta(days=1)).isoformat()]["delivery_rate"] is None

    narrowed = api.get("/api/v1/stats", query_string={"state": "failed"}).json
    assert (narrowed["failed"], narrowed["delivered"], narrowed["delivery_rate"]) == (1, 0, 0.0)


def test_stats_see_only_the_stores_own_actions(api: Api, rt: Runtime) -> None:
    sandbox(api)
    pending_action(api)
    other = Api(api.client, make_tenant(rt, "Other"))
    assert other.get("/api/v1/stats").json["pending"] == 0


@pytest.mark.parametrize("query", [{"from": "soon"}, {"state": "nope"}, {"from": "2026-02-01", "to": "2026-01-01"}])
def test_bad_stats_and_export_filters_are_422s(api: Api, query: dict[str, str]) -> None:
    assert api.get("/api/v1/stats", query_string=query).status_code == 422
    assert api.get("/api/v1/actions/export", query_string=query).status_code == 422
    assert api.get("/api/v1/actions/export", query_string={"format": "pdf"}).status_code == 422


def test_the_csv_export_has_exactly_the_filtered_actions_with_formulas_defused(api: Api, rt: Runtime) -> None:
    sandbox(api)
    wanted = pending_action(api, '=HYPERLINK("http://evil")', "ada@example.com")
    pending_action(api, "2", "bob@example.com")
    api.post("/api/v1/triggers", json=review(email="cy@example.com"))
    with rt.db.transaction() as session:
        session.execute(update(Action).where(Action.id == wanted["id"]).values(reason_text="@SUM(1+1)"))
    answer = api.get("/api/v1/actions/export", query_string={"trigger_type": "order.fulfilled", "q": "ada"})
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv" and "attachment" in answer.headers["Content-Disposition"]
    assert answer.is_streamed
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [int(r["id"]) for r in rows] == [wanted["id"]]
    assert rows[0]["order_id"] == '\'=HYPERLINK("http://evil")' and rows[0]["reason"] == "'@SUM(1+1)"
    assert rows[0]["email"] == "ada@example.com" and rows[0]["flow"] == "Post-purchase review request"


def test_the_xlsx_export_reads_back_with_the_same_rows_and_no_formulas(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH", 2)  # several keyset batches
    sandbox(api)
    ids = [pending_action(api, f"-{n}", f"c{n}@example.com")["id"] for n in range(5)]
    answer = api.get("/api/v1/actions/export", query_string={"format": "xlsx"})
    assert answer.status_code == 200 and answer.mimetype.endswith("spreadsheetml.sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(answer.get_data())).active
    values = list(sheet.values)
    assert values[0][:3] == ("id", "created_at", "scheduled_at")
    assert [row[0] for row in values[1:]] == ids
    order_col = values[0].index("order_id")
    assert [row[order_col] for row in values[1:]] == [f"'-{n}" for n in range(5)]
    assert isinstance(values[1][1], datetime)


def test_an_empty_export_still_has_its_header(api: Api) -> None:
    text = api.get("/api/v1/actions/export").get_data(as_text=True)
    assert text.strip() == ",".join(export.COLUMNS)
    book = openpyxl.load_workbook(io.BytesIO(api.get("/api/v1/actions/export?format=xlsx").get_data()))
    assert list(book.active.values) == [export.COLUMNS]


def test_cells_that_would_run_as_formulas_are_quoted() -> None:
    assert [export.safe(v) for v in ("=1+1", "+1", "-1", "@a", "\tx", "\rx", "a=b", 5)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@a",
        "'\tx",
        "'\rx",
        "a=b",
        5,
    ]


def test_the_xlsx_temporary_file_is_removed_when_the_download_ends_or_is_abandoned(
    api: Api, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "CHUNK_BYTES", 512)  # several chunks
    made: list[str] = []
    real = export.tempfile.mkstemp

    def mkstemp(**kwargs: Any) -> tuple[int, str]:
        handle, path = real(**kwargs)
        if path.endswith(".xlsx"):  # xlsxwriter makes temporary files of its own, and removes them
            made.append(path)
        return handle, path

    monkeypatch.setattr(export.tempfile, "mkstemp", mkstemp)
    sandbox(api)
    for n in range(20):
        pending_action(api, f"o{n}", f"c{n}@example.com")
    whole = b"".join(export.xlsx_stream(rt.db, api.tenant.store.id, {}))
    assert whole.startswith(b"PK") and not os.path.exists(made[-1])
    abandoned = export.xlsx_stream(rt.db, api.tenant.store.id, {})
    assert next(abandoned).startswith(b"PK") and os.path.exists(made[-1])
    abandoned.close()  # the client went away: the server closes the response iterator
    assert not os.path.exists(made[-1])
