"""P5's load generator (bench/lean_client.py): every answer it counts was a 2xx the server gave, and anything else
stops the run."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from bench import lean_client


class Recording(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn serves the bench
    status = 202
    closes = False  # answer "Connection: close" and close, as gunicorn's sync workers do
    bodies: ClassVar[list[dict[str, Any]]] = []
    ports: ClassVar[list[int]] = []  # the client's port of each request: one per connection

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["Authorization"] == "Bearer tok"
        type(self).bodies.append(body)
        type(self).ports.append(self.client_address[1])
        answer = b'{"ok":true}' if self.status < 300 else b'{"message":"no"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if self.closes:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


class Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing its keep-alive connection at the end is not an error here


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, type[Recording]]]:
    status, closes = getattr(request, "param", (202, False))
    handler = type("Handler", (Recording,), {"status": status, "closes": closes, "bodies": [], "ports": []})
    httpd = Quiet(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/ingest", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def answers(url: str, worker: int = 0, seconds: float = 0.3) -> int:
    """Run one lean client against ``url`` (already started) for ``seconds``: the answers it counted."""
    counter = multiprocessing.Value("i", 0)
    start = multiprocessing.Event()
    start.set()
    try:
        lean_client.run(url, "tok", seconds, worker, counter, start)
    finally:
        counted: int = counter.value
    return counted


def test_the_lean_client_counts_every_answer_and_sends_each_connection_its_own_triggers(
    server: tuple[str, type[Recording]],
) -> None:
    url, handler = server
    assert answers(url, worker=2) == len(handler.bodies) > lean_client.CONNECTIONS
    orders = [body["order"]["id"] for body in handler.bodies]
    assert len(set(orders)) == len(orders)  # every trigger is a new order
    # Client 2's connections name their triggers 8-0, 9-0, 10-0, 11-0, ...
    assert {f"{2 * lean_client.CONNECTIONS + c}-0" for c in range(lean_client.CONNECTIONS)} <= set(orders)
    assert handler.bodies[0]["type"] == "order.fulfilled"


@pytest.mark.parametrize("server", [(202, True)], indirect=True)
def test_the_lean_client_opens_a_new_connection_when_the_server_closes_each_one(
    server: tuple[str, type[Recording]],
) -> None:
    url, handler = server
    assert answers(url) == len(handler.bodies) > 2 * lean_client.CONNECTIONS


@pytest.mark.parametrize("server", [(422, False)], indirect=True)
def test_an_answer_other_than_2xx_stops_the_client_with_the_status(server: tuple[str, type[Recording]]) -> None:
    url, handler = server
    with pytest.raises(lean_client.Refused, match="422"):
        answers(url)
    assert len(handler.bodies) <= lean_client.CONNECTIONS  # the first request of each connection, none after


def test_the_lean_client_opens_a_new_connection_after_each_ones_share_of_requests(
    server: tuple[str, type[Recording]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = server
    monkeypatch.setattr(lean_client, "REQUESTS_PER_CONNECTION", 5)
    assert answers(url, seconds=0.5) == len(handler.bodies) > 2 * 5 * lean_client.CONNECTIONS
    per_connection = Counter(handler.ports)
    assert max(per_connection.values()) == 5 and len(per_connection) >= len(handler.bodies) // 5
