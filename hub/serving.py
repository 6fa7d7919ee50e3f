"""How the web process is served: one gunicorn configuration, used by the Procfile (through `hub web`),
`hub up`, and the benchmark (for the hub and for the ingest ceiling it is compared with).

Threaded workers (gthread): a request spends most of its time waiting on PostgreSQL (a trigger makes a few
round trips and a commit that waits for the WAL flush), and a worker's other threads use the CPU meanwhile.
They also keep HTTP connections alive between requests, which sync workers never do. On two cores bench P5
served 1.6–3.9× as many triggers per second with 2 workers × 4 threads as with 2 sync workers in 7 of 8
paired runs, and 8 threads did no better than 4 (docs/operations.md).
"""

from __future__ import annotations

APP = "hub.app:create_app()"
WORKERS = 2
THREADS = 4
KEEP_ALIVE_SECONDS = 5  # gunicorn's default is 2; clients that post triggers in a loop reuse their connection


def gunicorn_args(
    bind: str, *, workers: int = WORKERS, threads: int = THREADS, app: str = APP, access_log: bool = False
) -> list[str]:
    """gunicorn's command-line arguments (after ``python -m gunicorn``)."""
    args = [
        app,
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        str(KEEP_ALIVE_SECONDS),
        "--no-control-socket",
    ]
    if access_log:
        args += ["--access-logfile", "-"]
    return args
