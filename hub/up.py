"""`hub up`: web, workers and the dispatcher in one terminal, on the embedded default or a configured one."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from typing import Any

import click
import requests
from honcho.manager import Manager  # type: ignore[import-untyped]

from hub import embedded_redis, serving
from hub.config import Config
from hub.migrate import upgrade
from hub.runtime import Runtime

DEMO_STORE = "Demo Store"


def run(config: Config, *, port: int, workers: int, demo: bool) -> None:
    rt = Runtime(config)
    upgrade(rt.db)
    started_redis = config.embedded_redis and not embedded_redis._alive(
        embedded_redis.socket_path(config.instance_path)
    )
    redis_url = rt.redis_url
    env = {
        "HUB_INSTANCE_PATH": str(config.instance_path),
        "HUB_DATABASE_URL": config.database_url,
        "HUB_REDIS_URL": redis_url,
        "HUB_PUBLIC_URL": config.public_url,
        # The embedded default runs on one machine: these children share the generated key file.
        "HUB_SECRET_KEYS": ",".join(config.secret_keys),
    }
    python = shlex.quote(sys.executable)
    manager = Manager()
    web = serving.gunicorn_args(f"127.0.0.1:{port}")  # the same settings as `hub web` and the Procfile
    manager.add_process("web", shlex.join([sys.executable, "-m", "gunicorn", *web]), env=env)
    manager.add_process("worker", f"{python} -m hub worker --count {workers}", env=env)
    manager.add_process("dispatcher", f"{python} -m hub dispatch", env=env)
    if demo:
        threading.Thread(target=_demo, args=(rt, config.public_url), daemon=True).start()
    else:
        click.echo(f"Tidings is starting on {config.public_url} (Ctrl-C stops everything)")
    try:
        manager.loop()
    finally:
        if started_redis:
            embedded_redis.stop(config.instance_path)
    sys.exit(manager.returncode)


def _demo(rt: Runtime, url: str) -> None:
    """Once the web process answers, set up the demo store through the real API."""
    from sqlalchemy import select

    from hub.models import Store
    from hub.stores import create_store, create_token

    with rt.db.transaction() as session:
        store = session.scalars(select(Store).where(Store.name == DEMO_STORE)).first() or create_store(
            session, DEMO_STORE, "Demo"
        )
        _, token = create_token(session, store.id, "demo")
    if not _wait_for(url):
        click.echo("the web process did not start; see its output above", err=True)
        return
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    api.post(f"{url}/api/v1/integrations", json={"app": "sandbox"}, timeout=10)
    for trigger in _sample_triggers():
        api.post(f"{url}/api/v1/triggers", json=trigger, timeout=10)
    click.echo(
        "\n"
        f"  Tidings demo is running at {url}\n"
        f"  API token: {token}\n"
        f"  Try: curl -H 'Authorization: Bearer {token}' {url}/api/v1/events\n"
        "  Ctrl-C stops everything.\n"
    )


def _wait_for(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=1).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def _sample_triggers() -> list[dict[str, Any]]:
    from datetime import UTC, datetime, timedelta

    two_weeks_ago = (datetime.now(UTC) - timedelta(days=14, minutes=5)).isoformat()
    people = [("ada@example.com", "Ada", "Lovelace"), ("grace@example.com", "Grace", "Hopper")]
    triggers: list[dict[str, Any]] = []
    for n, (email, first, last) in enumerate(people, 1):
        triggers.append(
            {
                "type": "order.fulfilled",
                "occurred_at": two_weeks_ago,  # its review request is due now
                "customer": {"email": email, "first_name": first, "last_name": last},
                "order": {
                    "id": f"demo-{1000 + n}",
                    "items": [{"product_id": "p-1", "name": "Linen Shirt", "price": "49.00", "currency": "USD"}],
                },
            }
        )
    triggers.append(
        {
            "type": "order.fulfilled",  # due in 14 days: it waits in the Queue
            "customer": {"email": "alan@example.com", "first_name": "Alan"},
            "order": {"id": "demo-1003", "items": [{"product_id": "p-2", "name": "Wool Scarf"}]},
        }
    )
    triggers.append(
        {
            "type": "review.submitted",
            # Not Ada: her review of p-1 would (rightly) skip her own review request as already reviewed.
            "customer": {"email": "katherine@example.com", "first_name": "Katherine"},
            "review": {"id": "r-1", "product_id": "p-1", "rating": 5, "title": "Lovely"},
        }
    )
    return triggers
