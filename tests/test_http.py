"""The one HTTP module: no private destinations, no redirects, timeouts, connection reuse, redaction."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connectors.base import OutcomeKind, Request, default_classify
from connectors.http import BlockedDestination, HttpClient, TransportError, redact


class Server:
    """A local HTTP server: /ok answers 202, /redirect answers 302, /slow sleeps. It notes client ports."""

    def __init__(self) -> None:
        self.client_ports: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                server.client_ports.append(self.client_address[1])
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                elif self.path == "/slow":
                    time.sleep(1.0)
                    self.send_response(202)
                else:
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://192.168.1.1/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_private_and_loopback_destinations_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(BlockedDestination):
        HttpClient().send(Request("POST", url, json={}))


def test_a_name_that_resolves_to_a_private_address_is_refused_on_the_connected_socket(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a public-looking name that resolves to loopback when the socket connects."""
    real = socket.getaddrinfo
    port = int(server.url.rsplit(":", 1)[1])

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "hooks.example.com" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(BlockedDestination):
        HttpClient().send(Request("POST", f"http://hooks.example.com:{port}/ok", json={}))
    with pytest.raises(BlockedDestination):
        HttpClient().send(Request("POST", f"http://localhost.:{port}/ok", json={}))
    assert server.client_ports == []  # refused before a byte was sent


def test_a_private_destination_is_allowed_when_configured_or_trusted(server: Server) -> None:
    assert HttpClient(allow_private=True).send(Request("POST", f"{server.url}/ok", json={})).status_code == 202
    trusted = HttpClient(trusted_origins=[server.url])
    assert trusted.send(Request("POST", f"{server.url}/ok", json={})).status_code == 202


def test_redirects_are_never_followed(server: Server) -> None:
    client = HttpClient(allow_private=True)
    response = client.send(Request("POST", f"{server.url}/redirect", json={}))
    assert response.status_code == 302
    assert default_classify(response).kind == OutcomeKind.PERMANENT
    assert len(server.client_ports) == 1


def test_a_slow_platform_times_out_as_a_retryable_transport_error(server: Server) -> None:
    client = HttpClient(allow_private=True, read_timeout=0.2)
    with pytest.raises(TransportError) as caught:
        client.send(Request("POST", f"{server.url}/slow", json={}))
    assert caught.value.kind == "timeout"
    assert default_classify(None, caught.value).kind == OutcomeKind.RETRY


def test_a_refused_connection_is_a_retryable_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(TransportError) as caught:
        HttpClient(allow_private=True, connect_timeout=0.5).send(Request("POST", f"http://127.0.0.1:{port}/", json={}))
    assert caught.value.kind == "connection"


def test_an_invalid_url_is_a_permanent_failure() -> None:
    with pytest.raises(TransportError) as caught:
        HttpClient().send(Request("POST", "ftp://files.example.com/x", json={}))
    assert caught.value.kind == "invalid_url"
    assert default_classify(None, caught.value).kind == OutcomeKind.PERMANENT


def test_connections_are_reused_across_requests(server: Server) -> None:
    client = HttpClient(allow_private=True)
    for _ in range(5):
        client.send(Request("POST", f"{server.url}/ok", json={"n": 1}))
    assert len(set(server.client_ports)) == 1


def test_redact_removes_secrets_from_url_headers_and_body() -> None:
    request = Request(
        "POST",
        "https://api.example.com/v1?key=sk_live_123456",
        headers={"Authorization": "Bearer sk_live_123456", "X-Custom": "token sk_live_123456", "X-Plain": "ok"},
        json={"nested": [{"secret": "sk_live_123456"}], "fine": "value"},
        secrets=("sk_live_123456",),
    )
    record = redact(request)
    assert "sk_live_123456" not in repr(record)
    assert record["headers"]["Authorization"] == "[redacted]"
    assert record["headers"]["X-Plain"] == "ok"
    assert record["body"] == {"nested": [{"secret": "[redacted]"}], "fine": "value"}


def test_redact_keeps_idempotency_keys_visible() -> None:
    record = redact(Request("POST", "https://x.example.com", headers={"Idempotency-Key": "abc", "Api-Key": "k"}))
    assert record["headers"] == {"Idempotency-Key": "abc", "Api-Key": "[redacted]"}
