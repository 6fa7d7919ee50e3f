"""rq job: run a recorded bulk operation (hub.bulk does the work; the row reports progress)."""

from __future__ import annotations

from hub import bulk, runtime


def run(operation_id: int) -> None:
    bulk.run(runtime.current(), operation_id)
