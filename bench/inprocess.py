"""Delivery in one process, for profiling: claims and jobs run one after another, no rq, no worker processes.

    python -m bench.inprocess                   # P2's shape: Klaviyo bulk, 20,000 actions, jobs of 1,000
    python -m bench.inprocess --app webhook     # P1's shape: one request per event
    python -m bench.inprocess --profile out.txt # the same under pyinstrument (its figures include its overhead)

Prints the CPU an event of this process (the dispatcher's claims and the jobs' Python) and of its PostgreSQL
backend, on a fresh database and the bench's stub. What the full bench adds (rq, two workers and a dispatcher
sharing the cores, autovacuum) is left out, so compare these figures with each other, before and after a change,
and the bench's with the bench's.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from bench.run import cpu_seconds, make_store, postgres_pids, prepared, seed_actions
from hub import delivery, outbox
from hub.config import load
from hub.runtime import Runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app", choices=("klaviyo", "webhook"), default="klaviyo")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000, help="ids a claim and a job take")
    parser.add_argument("--profile", type=Path, default=None, help="write a pyinstrument profile here")
    args = parser.parse_args()
    with prepared("smoke") as setup:
        if setup.database_name is None:
            raise SystemExit("bench.inprocess needs PostgreSQL on 127.0.0.1:5432")
        store_id, integration_id, _ = make_store(setup, args.app)
        seed_actions(setup, store_id, integration_id, args.events + args.batch, datetime.now(UTC) - timedelta(1))
        rt = Runtime(load(setup.env(HUB_RATE_LIMIT_SCALE="0")))  # as the bench's P2: the stub is not the platform
        with rt.db.engine.begin() as connection:
            connection.execute(text("ANALYZE"))

        def run_one() -> int:
            claimed = outbox.claim_due(rt.db, args.batch, rt.config.lease_seconds)
            if claimed:
                delivery.deliver_batch(rt, [c.id for c in claimed], claimed[0].lease)
            return len(claimed)

        run_one()  # warm: the first job plans and prepares what the others reuse
        profiler = None
        if args.profile:
            import pyinstrument  # a profiling tool, not a dependency of the hub

            profiler = pyinstrument.Profiler(interval=0.0005)
            profiler.start()
        backends = postgres_pids(setup.database_name)
        ours, theirs, began = time.process_time(), cpu_seconds(backends), time.perf_counter()
        done = 0
        while moved := run_one():
            done += moved
        ours, theirs = time.process_time() - ours, cpu_seconds(backends) - theirs
        elapsed = time.perf_counter() - began
        if profiler is not None:
            profiler.stop()
            args.profile.write_text(profiler.output_text(unicode=True, color=False))
        rt.close()
    print(
        f"{args.app}: {done} events in {elapsed:.2f} s; CPU an event: this process {ours / done * 1e6:.1f} µs, "
        f"PostgreSQL {theirs / done * 1e6:.1f} µs"
    )


if __name__ == "__main__":
    main()
