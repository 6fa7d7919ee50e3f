"""Reading the outbox in aggregate: stats for a period and filter, and the export of a filter."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response

from hub import export
from hub import stats as service
from hub.api import Blueprint, authenticate, current_store, db_session, runtime
from schemas.outbox import ExportQuery, StatsOut, StatsQuery

blp = Blueprint("reports", __name__, description="Stats and exports over the shared filter.")
blp.before_request(authenticate)

MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@blp.route("/stats", methods=["GET"])
@blp.arguments(StatsQuery, location="query")
@blp.response(200, StatsOut)
def get_stats(query: dict[str, Any]) -> Any:
    """Sent, delivered, failed, pending, skipped and cancelled for a period (from/to, by created, scheduled or
    updated date) and filter; the delivery rate (delivered / delivered + failed); per app; per UTC day."""
    return service.stats(db_session(), current_store().id, query)


@blp.route("/actions/export", methods=["GET"])
@blp.arguments(ExportQuery, location="query")
@blp.response(200, description="A CSV or XLSX file of every action the filter selects, streamed.")
def export_actions(query: dict[str, Any]) -> Any:
    """Export exactly the current filter, as CSV (default) or XLSX (`format=xlsx`). No size cap; cells a
    spreadsheet would evaluate as formulas are prefixed with a single quote."""
    fmt = query.pop("format")
    stream = export.xlsx_stream if fmt == "xlsx" else export.csv_stream
    name = f"actions-{datetime.now(UTC):%Y%m%d-%H%M%S}.{fmt}"
    return Response(
        stream(runtime().db, current_store().id, query),
        mimetype=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
