"""rq job functions. They carry action ids only; the database holds everything else."""

from __future__ import annotations

from hub import delivery, runtime


def deliver(action_ids: list[int], lease: str | None = None) -> dict[str, int]:
    return delivery.deliver_batch(runtime.current(), action_ids, lease)
