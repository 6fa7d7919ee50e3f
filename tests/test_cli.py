"""The hub command: clear messages and non-zero exits for bad input, and the processes it runs."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text

from hub.cli import main
from hub.models import Action
from hub.runtime import Runtime
from tests.conftest import POSTGRES_URL, Tenant, _free_port, _reachable, run_worker


def env_for(rt: Runtime) -> dict[str, str]:
    return {
        "HUB_DATABASE_URL": rt.config.database_url,
        "HUB_REDIS_URL": rt.redis_url,
        "HUB_SECRET_KEYS": ",".join(rt.config.secret_keys),
        "HUB_INSTANCE_PATH": str(rt.config.instance_path),
        "HUB_PUBLIC_URL": rt.config.public_url,
    }


@pytest.fixture
def hub(rt: Runtime):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def run(*args: str, **env: str):  # type: ignore[no-untyped-def]
        return runner.invoke(main, list(args), env={**env_for(rt), **env}, catch_exceptions=False)

    return run


def test_a_bad_setting_is_a_message_naming_it_and_a_non_zero_exit(hub) -> None:  # type: ignore[no-untyped-def]
    result = hub("db", "upgrade", HUB_DATABASE_URL="mysql://nope")
    assert result.exit_code != 0
    assert "HUB_DATABASE_URL" in result.output and "Traceback" not in result.output


def test_an_unreachable_database_is_a_message_not_a_traceback(hub) -> None:  # type: ignore[no-untyped-def]
    result = hub("db", "upgrade", HUB_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{_free_port()}/none")
    assert result.exit_code != 0 and "database:" in result.output


def test_stores_and_tokens_are_created_from_the_command_line(hub, app) -> None:  # type: ignore[no-untyped-def]
    created = hub("stores", "create", "Acme Outdoors")
    assert created.exit_code == 0, created.output
    store_id = created.output.split()[1]
    token = hub("tokens", "create", "--store", store_id, "--name", "ci").output.strip()
    answer = app.test_client().get("/api/v1/integrations", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("stores", "create", " "), "NAME"),
        (("tokens", "create", "--store", "999999"), "no store 999999"),
        (("tokens", "create", "--store", "abc"), "not a valid integer"),
        (("events", "test", "sandbox", "--store", "999999", "--email", "a@example.com"), "no store 999999"),
        (("events", "test", "sandbox", "--store", "1"), "target"),
        (("events", "test", "sandbox", "--store", "1", "--phone", "555"), "E.164"),
    ],
)
def test_bad_arguments_are_messages_and_non_zero_exits(hub, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    result = hub(*args)
    assert result.exit_code != 0
    assert message in result.output


def test_a_test_event_for_an_app_that_is_not_connected_says_so(hub, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    result = hub("events", "test", "sandbox", "--store", str(tenant.store.id), "--email", "qa@example.com")
    assert result.exit_code != 0 and "No 'sandbox' integration is connected" in result.output


def test_events_test_sends_a_manual_event_and_shows_what_was_sent(hub, api, rt: Runtime, live_server: str) -> None:  # type: ignore[no-untyped-def]
    api.post("/api/v1/integrations", json={"app": "sandbox"})
    store = str(api.tenant.store.id)
    started = hub("events", "test", "sandbox", "--store", store, "--email", "qa@example.com", "--wait", "0")
    assert started.exit_code == 0, started.output
    assert "sending" in started.output  # claimed at once, the job in Redis
    run_worker(rt)
    with rt.db.session() as session:
        action = session.scalars(select(Action)).one()
    assert (action.state, action.trigger) == ("delivered", "manual")
    # With no worker running, waiting for the outcome ends in a clear message and a non-zero exit.
    shown = hub("events", "test", "sandbox", "--store", store, "--email", "qa@example.com", "--wait", "0.5")
    assert shown.exit_code == 1 and "no attempt yet" in shown.output


def test_connectors_list_shows_the_built_ins(hub) -> None:  # type: ignore[no-untyped-def]
    output = hub("connectors", "list").output
    assert "sandbox" in output and "webhook" in output


@pytest.mark.skipif(not _reachable("127.0.0.1", 5432), reason="needs PostgreSQL")
def test_three_upgrades_at_once_on_a_fresh_postgresql_database_all_succeed(rt: Runtime) -> None:
    name = f"tidings_migrate_{secrets.token_hex(3)}"
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        env = {**os.environ, **env_for(rt), "HUB_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + "/" + name}
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "hub", "db", "upgrade"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60)[0].decode() for p in runs]
        assert [p.returncode for p in runs] == [0, 0, 0], outputs
        assert all("database at revision 0015" in o for o in outputs)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_hub_up_runs_everything_on_the_embedded_default_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_INSTANCE_PATH"] = str(tmp_path)
    up = subprocess.Popen(
        [sys.executable, "-m", "hub", "up", "--demo", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        token = _wait_for_token(up, timeout=60)
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = requests.get(f"http://127.0.0.1:{port}/api/v1/events", headers=headers, timeout=5).json()["data"]
            if len(events) == 3 and all(e["status"] == "delivered" for e in events):
                break
            time.sleep(0.3)
        assert [e["status"] for e in events] == ["delivered"] * 3
    finally:
        up.send_signal(signal.SIGINT)
        rest = up.communicate(timeout=30)[0].decode()
    assert up.returncode is not None
    assert "web stopped" in rest and "worker stopped" in rest and "dispatcher stopped" in rest
    with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as sock:  # the embedded Redis it started is gone too
        sock.connect(str(tmp_path / "redis.sock"))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def _wait_for_token(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = process.stdout.read() or b""
        seen += chunk
        for line in seen.decode(errors="replace").splitlines():
            if "API token:" in line:
                os.set_blocking(process.stdout.fileno(), True)
                return line.split("API token:")[1].strip()
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"hub up printed no token:\n{seen.decode(errors='replace')}")


def test_hub_web_serves_the_api_with_gunicorn(rt: Runtime) -> None:
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, **env_for(rt)}
    web = subprocess.Popen([sys.executable, "-m", "hub", "web", "--port", str(port), "--workers", "1"], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=5)
                break
            except requests.RequestException:  # not listening yet, or still booting its workers
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["info"]["title"] == "Tidings"
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(20)


def test_connectors_check_runs_the_contract_suite_against_an_installed_connector() -> None:
    passed = subprocess.run(
        [sys.executable, "-m", "hub", "connectors", "check", "webhook"], capture_output=True, text=True, timeout=120
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "passed" in passed.stdout and "failed" not in passed.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "hub", "connectors", "check", "nope"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode != 0 and "no connector 'nope'" in unknown.stderr


@pytest.mark.parametrize("key", ["attentive", "braze", "customerio", "iterable", "klaviyo", "omnisend", "postscript"])
def test_connectors_check_passes_every_built_in_platform_connector_with_its_declared_quirks(key: str) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "hub", "connectors", "check", key], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed" in checked.stdout and "failed" not in checked.stdout


def test_the_example_connector_package_is_installed_and_passes_the_contract_suite() -> None:
    from connectors import registry

    registry.reset()
    assert registry.available()["acme_crm"].__module__ == "acme_tidings.connector"  # found by its entry point
    checked = subprocess.run(
        [sys.executable, "-m", "hub", "connectors", "check", "acme_crm"], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
