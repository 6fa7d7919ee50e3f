"""P4's reads in one process, for profiling: the lists, the stats and the floor call through the app's WSGI callable.

    python -m bench.inprocess_reads                      # 100,000 actions, 300 calls of each case, twice
    python -m bench.inprocess_reads --rows 1000000       # P4's own size (the seed takes a minute or two)
    python -m bench.inprocess_reads --profile out.txt    # under pyinstrument (its figures include its overhead)
    python -m bench.inprocess_reads --only events_page,floor_integrations

Seeds a fresh PostgreSQL database as P4 does (``bench.run.seed_p4``), then prints, for each of P4's cases
(``bench.run.p4_calls``), the CPU a call of this process (Flask, the hub, psycopg) and of its PostgreSQL backend.
Requests are WSGI environs built beforehand and handed to ``app.wsgi_app``: neither gunicorn's nor a client's work
is counted, so compare these figures with each other, before and after a change, and the bench's with the bench's.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.inprocess_ingest import call
from bench.run import cpu_seconds, make_store, p4_calls, postgres_pids, prepared, seed_p4
from hub.app import create_app
from hub.config import load


def environ(token: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    """A GET's WSGI environ, as gunicorn gives it."""
    query = urlencode(params)
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "RAW_URI": f"{path}?{query}" if query else path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_ACCEPT": "*/*",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate",
        "HTTP_USER_AGENT": "python-requests/2.32.3",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def get(app: Any, env: dict[str, Any]) -> bytes:
    """The body of one call; raises unless it answered 200."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc_info: Any = None) -> Any:
        statuses.append(status)
        return None

    body = call(app, dict(env), start_response)
    if not statuses[0].startswith("200"):
        raise SystemExit(f"{env['PATH_INFO']}?{env['QUERY_STRING']} answered {statuses[0]}: {body[:300]!r}")
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="actions seeded (P4 seeds 1,000,000)")
    parser.add_argument("--calls", type=int, default=300, help="calls of each case a measured round makes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma-separated case names (default: all of P4's)")
    parser.add_argument("--profile", type=Path, default=None, help="write a pyinstrument profile here")
    args = parser.parse_args()
    with prepared("smoke") as setup:
        if setup.database_name is None:
            raise SystemExit("bench.inprocess_reads needs PostgreSQL on 127.0.0.1:5432")
        store_id, integration_id, token = make_store(setup)
        seeded = seed_p4(setup, store_id, integration_id, args.rows)
        print(f"seeded {args.rows} actions in {seeded:.1f} s", file=sys.stderr)
        app = create_app(load(setup.env()))
        wsgi = app.wsgi_app  # what gunicorn calls, without Flask's __call__ indirection (the same for all runs)
        first = json.loads(get(wsgi, environ(token, "/api/v1/events", {"limit": "50"})))
        cases = {
            name: environ(token, path, params)
            for name, (path, params) in p4_calls(datetime.now(UTC), first["next_cursor"]).items()
        }
        if args.only:
            wanted = [name.strip() for name in args.only.split(",")]
            unknown = set(wanted) - set(cases)
            if unknown:
                raise SystemExit(f"no such case: {', '.join(sorted(unknown))} (cases: {', '.join(cases)})")
            cases = {name: cases[name] for name in wanted}
        for env in cases.values():
            for _ in range(20):
                get(wsgi, env)  # warm: imports, the token cache, prepared statements (psycopg prepares at the 5th)
        profiler = None
        if args.profile:
            import pyinstrument  # a profiling tool, not a dependency of the hub

            profiler = pyinstrument.Profiler(interval=0.0002)
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, env in cases.items():
                backends = postgres_pids(setup.database_name)
                if profiler is not None:
                    profiler.start()
                ours, theirs = time.process_time(), cpu_seconds(backends)
                for _ in range(args.calls):
                    get(wsgi, env)
                ours, theirs = time.process_time() - ours, cpu_seconds(backends) - theirs
                if profiler is not None:
                    profiler.stop()
                figures[name].append((ours / args.calls * 1e6, theirs / args.calls * 1e6))
        if profiler is not None:
            args.profile.write_text(profiler.output_text(unicode=True, color=False))
        app.extensions["tidings"].close()
    print(f"CPU a call, µs ({args.rows} actions, {args.calls} calls a round): this process / PostgreSQL")
    for name, rounds in figures.items():
        cells = "   ".join(f"{ours:6.0f} / {theirs:4.0f}" for ours, theirs in rounds)
        print(f"  {name:<27} {cells}")


if __name__ == "__main__":
    main()
