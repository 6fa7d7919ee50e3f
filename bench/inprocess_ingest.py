"""Trigger ingest in one process, for profiling: P5's requests through the app's WSGI callable, no server.

    python -m bench.inprocess_ingest                   # 2,000 triggers after a warm-up, twice
    python -m bench.inprocess_ingest --profile out.txt # the same under pyinstrument (its figures include its overhead)
    python -m bench.inprocess_ingest --bulk 1000       # P5's bulk: 1,000 triggers a request to /triggers/bulk
    python -m bench.inprocess_ingest --threads 4       # four threads posting at once, as a gthread worker serves them
    python -m bench.inprocess_ingest --async           # with Prefer: respond-async (stored; not processed here)

Prints the CPU a trigger of this process (Flask, the hub and psycopg) and of its PostgreSQL backend, on a fresh
database, for P5's triggers (a new order of a new customer, one connected app, one action). Requests are WSGI
environs built beforehand (bodies encoded) and handed to ``app.wsgi_app``: neither gunicorn's nor the test client's
work is counted. What the full bench adds (gunicorn, threads, clients sharing the cores) is left out, so compare
these figures with each other, before and after a change, and the bench's with the bench's.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.lean_client import trigger
from bench.run import analyze, cpu_seconds, make_store, postgres_pids, prepared
from hub.app import create_app
from hub.config import load


def environs(
    token: str, prefix: str, count: int, bulk: int = 0, respond_async: bool = False
) -> Iterator[dict[str, Any]]:
    """WSGI environs of ``count`` P5 triggers, as gunicorn gives them: one a request, or with ``bulk`` that many a
    request to /triggers/bulk (as P5's bulk clients send them); with ``respond_async``, Prefer: respond-async."""
    if bulk:
        for start in range(0, count, bulk):
            triggers = [trigger(prefix, n) for n in range(start, min(start + bulk, count))]
            yield environ(token, "/api/v1/triggers/bulk", json.dumps({"triggers": triggers}).encode())
    else:
        for n in range(count):
            one = environ(token, "/api/v1/triggers", json.dumps(trigger(prefix, n)).encode())
            if respond_async:
                one["HTTP_PREFER"] = "respond-async"
            yield one


def environ(token: str, path: str, body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "RAW_URI": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_ACCEPT": "*/*",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call(app: Any, environ: dict[str, Any], start_response: Any) -> bytes:
    """One WSGI call, as a server makes it: the body read whole, the answer closed."""
    answer = app(environ, start_response)
    try:
        return b"".join(answer)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()


def post_all(app: Any, requests: list[dict[str, Any]], bulk: int = 0) -> None:
    """Each request through ``app``; stops the run if one was not accepted whole (202, or for bulk 200 with every
    trigger accepted)."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc_info: Any = None) -> Any:
        statuses.append(status)
        return None

    refused = 0
    for environ in requests:
        body = call(app, environ, start_response)
        if bulk and statuses[-1].startswith("200"):
            refused += json.loads(body)["duplicates"] + json.loads(body)["rejected"]
    wrong = [s for s in statuses if not s.startswith("200" if bulk else "202")]
    if wrong or refused:
        raise SystemExit(f"{len(wrong)} requests, {refused} triggers were not accepted: {wrong[:3]}")


def post_concurrently(app: Any, requests: list[dict[str, Any]], bulk: int, threads: int) -> None:
    """``post_all`` in ``threads`` threads at once, each with its share of the requests; the first refusal stops
    the run."""
    if threads == 1:
        post_all(app, requests, bulk)
        return
    failures: list[BaseException] = []

    def post(share: list[dict[str, Any]]) -> None:
        try:
            post_all(app, share, bulk)
        except BaseException as failure:  # SystemExit from post_all: reported by the main thread
            failures.append(failure)

    workers = [threading.Thread(target=post, args=(requests[n::threads],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--triggers", type=int, default=None, help="triggers a measured round posts (2,000; bulk 10,000)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bulk", type=int, default=0, help="triggers a request, to /triggers/bulk (P5: 1,000)")
    parser.add_argument("--profile", type=Path, default=None, help="write a pyinstrument profile here")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads posting a round's requests at once (a gthread worker has 4)"
    )
    parser.add_argument(
        "--async",
        dest="respond_async",
        action="store_true",
        help="send Prefer: respond-async: the triggers are stored for the dispatcher, which does not run here",
    )
    args = parser.parse_args()
    if not 1 <= args.threads <= 64:
        parser.error("--threads must be from 1 to 64")
    bulk = args.bulk
    count = args.triggers or (10_000 if bulk else 2_000)
    with prepared("smoke") as setup:
        if setup.database_name is None:
            raise SystemExit("bench.inprocess_ingest needs PostgreSQL on 127.0.0.1:5432")
        _, _, token = make_store(setup)
        app = create_app(load(setup.env()))
        wsgi = app.wsgi_app  # what gunicorn calls, without Flask's __call__ indirection (the same for all runs)
        # As P5: a warm-up, then the planner's statistics, then a few more so the statements are prepared again.
        # (P5's bulk run follows its single run, on the tables that one filled.)
        post_all(wsgi, list(environs(token, "warm", 500)))
        analyze(setup, "customers", "triggers", "actions")
        post_all(wsgi, list(environs(token, "warm2", 50)))
        if bulk:
            post_all(wsgi, list(environs(token, "warm3", 3 * bulk, bulk)), bulk)
        profiler = None
        if args.profile:
            import pyinstrument  # a profiling tool, not a dependency of the hub

            profiler = pyinstrument.Profiler(interval=0.001)
        figures = []
        for round_ in range(args.rounds):
            requests = list(environs(token, f"r{round_}", count, bulk, args.respond_async))
            # Backends the app opens during the round (more threads, more pooled connections) count from zero.
            before = {pid: cpu_seconds([pid]) for pid in postgres_pids(setup.database_name)}
            if profiler is not None:
                profiler.start()
            ours, began = time.process_time(), time.perf_counter()
            post_concurrently(wsgi, requests, bulk, args.threads)
            ours = time.process_time() - ours
            theirs = sum(cpu_seconds([pid]) - before.get(pid, 0.0) for pid in postgres_pids(setup.database_name))
            elapsed = time.perf_counter() - began
            if profiler is not None:
                profiler.stop()
            figures.append((ours / count * 1e6, theirs / count * 1e6, elapsed))
        if profiler is not None:
            args.profile.write_text(profiler.output_text(unicode=True, color=False))
        app.extensions["tidings"].close()
    shape = f" ({bulk} a request)" if bulk else ""
    shape += f", {args.threads} threads" if args.threads > 1 else ""
    for ours, theirs, elapsed in figures:
        print(
            f"{count} triggers{shape} in {elapsed:.2f} s; CPU a trigger: "
            f"this process {ours:.0f} µs, PostgreSQL {theirs:.0f} µs"
        )


if __name__ == "__main__":
    main()
