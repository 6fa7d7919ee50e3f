"""connectors.http: the one module that sends. Real sockets against a local server; no mocks of requests."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import requests

from connectors.base import OutcomeKind, Request, default_classify
from connectors.http import (
    BODY_LIMIT,
    RESPONSE_LIMIT,
    BlockedDestination,
    HttpClient,
    Recorder,
    TransportError,
    origin,
    redact,
    redact_text,
)
from tests.connectors.local_server import LocalServer

SECRET = "sk_live_51HxTidingsSecret"


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records (and forbids) every outgoing TCP connect."""
    attempts: list[Any] = []

    def connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"connected to {address}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://localhost/hook",
        "http://localhost./hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "https://10.20.30.40/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
    ],
)
def test_private_loopback_and_reserved_destinations_are_refused_before_connecting(
    url: str, no_connect: list[Any]
) -> None:
    with pytest.raises(BlockedDestination) as caught:
        HttpClient().send(Request("POST", url, json={}))
    assert caught.value.kind == "blocked"
    assert no_connect == []
    outcome = default_classify(None, caught.value)
    assert outcome.kind == OutcomeKind.PERMANENT
    assert outcome.reason.startswith("destination not allowed: ")


def test_a_name_that_resolves_to_a_private_address_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch, no_connect: list[Any]
) -> None:
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("10.0.0.8", *a, **k))
    with pytest.raises(BlockedDestination) as caught:
        HttpClient().send(Request("POST", "https://internal.example.com/hook", json={}))
    assert no_connect == []
    assert "10.0.0.8" not in str(caught.value)  # how internal names resolve is not shown


def test_dns_rebinding_is_caught_on_the_address_the_socket_connected_to(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first lookup (the guard's) says public, the second (the connect's) says loopback."""
    real = socket.getaddrinfo
    lookups: list[str] = []
    port = int(server.url.rsplit(":", 1)[1])

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example.com":
            return real(host, *args, **kwargs)
        lookups.append(host)
        return real("93.184.215.14" if len(lookups) == 1 else "127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(BlockedDestination) as caught:
        HttpClient().send(Request("POST", f"http://rebind.example.com:{port}/ok", json={}))
    assert str(caught.value) == "destination rebind.example.com is a private or reserved address"
    assert len(lookups) == 2
    assert server.received == []  # connected, then closed before a byte was sent


def test_private_destinations_are_allowed_when_configured(server: LocalServer) -> None:
    client = HttpClient(allow_private=True)
    assert client.send(Request("POST", f"{server.url}/ok", json={})).status_code == 202


def test_a_trusted_origin_is_allowed_and_nothing_else_private(server: LocalServer) -> None:
    client = HttpClient(trusted_origins=[server.url.replace("http://", "HTTP://") + "/"])
    assert client.send(Request("POST", f"{server.url}/sandbox/1/events", json={})).status_code == 202
    with pytest.raises(BlockedDestination):
        client.send(Request("POST", "http://127.0.0.1:1/other", json={}))
    with pytest.raises(BlockedDestination):
        client.send(Request("POST", server.url.replace("http://", "https://") + "/other", json={}))


def test_origins_are_compared_with_the_default_port_spelled_out() -> None:
    assert origin("HTTP://Hub.Example.com/sandbox/1") == "http://hub.example.com:80"
    assert origin("https://hub.example.com:443") == "https://hub.example.com:443"
    assert origin("http://[::1]:8000/x") == "http://[::1]:8000"


def test_redirects_are_never_followed(server: LocalServer) -> None:
    response = HttpClient(allow_private=True).send(Request("POST", f"{server.url}/redirect", json={}))
    assert response.status_code == 302
    assert [r["path"] for r in server.received] == ["/redirect"]
    assert default_classify(response).kind == OutcomeKind.PERMANENT


def test_connections_are_reused_across_requests(server: LocalServer) -> None:
    client = HttpClient(allow_private=True)
    for n in range(5):
        assert client.send(Request("POST", f"{server.url}/ok", json={"n": n})).status_code == 202
    client.close()
    assert len(server.client_ports) == 5
    assert len(set(server.client_ports)) == 1


def test_it_sends_the_exact_bytes_with_its_user_agent(server: LocalServer) -> None:
    client = HttpClient(allow_private=True, user_agent="Tidings/test")
    body = b'{"name":"Caf\xc3\xa9"}'
    client.send(Request("POST", f"{server.url}/ok", {"Content-Type": "application/json"}, data=body))
    (received,) = server.received
    assert received["body"] == body
    assert received["headers"]["User-Agent"] == "Tidings/test"
    assert received["headers"]["Content-Type"] == "application/json"


def test_a_huge_answer_is_cut_and_the_client_keeps_working(server: LocalServer) -> None:
    client = HttpClient(allow_private=True)
    response = client.send(Request("GET", f"{server.url}/big"))
    assert response.status_code == 200 and len(response.content) == RESPONSE_LIMIT
    assert client.send(Request("GET", f"{server.url}/ok")).status_code == 202


def test_a_slow_platform_times_out_as_a_retryable_transport_error(server: LocalServer) -> None:
    client = HttpClient(allow_private=True, read_timeout=0.2)
    with pytest.raises(TransportError) as caught:
        client.send(Request("POST", f"{server.url}/slow?api_key={SECRET}", json={}))
    assert caught.value.kind == "timeout"
    assert SECRET not in str(caught.value)
    assert default_classify(None, caught.value).kind == OutcomeKind.RETRY


def test_a_body_that_stalls_half_way_times_out_too(server: LocalServer) -> None:
    with pytest.raises(TransportError) as caught:
        HttpClient(allow_private=True, read_timeout=0.2).send(Request("GET", f"{server.url}/stall"))
    assert caught.value.kind == "timeout"


def test_a_refused_connection_is_a_retryable_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(TransportError) as caught:
        HttpClient(allow_private=True, connect_timeout=0.5).send(Request("POST", f"http://127.0.0.1:{port}/", json={}))
    assert caught.value.kind == "connection"
    assert default_classify(None, caught.value).kind == OutcomeKind.RETRY


@pytest.mark.parametrize(
    "url", ["ftp://files.example.com/x", "http://", "not a url", "http://[::1/x", "http://example.com:99999/"]
)
def test_an_invalid_url_is_a_permanent_transport_error(url: str) -> None:
    with pytest.raises(TransportError) as caught:
        HttpClient().send(Request("POST", url, json={}))
    assert caught.value.kind == "invalid_url"
    assert default_classify(None, caught.value).kind == OutcomeKind.PERMANENT


def test_redact_removes_secrets_from_the_url_headers_and_json_body() -> None:
    request = Request(
        "POST",
        f"https://api.example.com/v1?key={SECRET}",
        headers={"Authorization": f"Bearer {SECRET}", "X-Custom": f"sig {SECRET}", "X-Plain": "ok"},
        json={"nested": [{"value": f"prefix-{SECRET}"}], SECRET: 1, "fine": "value", "n": 3},
        secrets=(SECRET,),
    )
    record = redact(request)
    assert SECRET not in json.dumps(record)
    assert record["url"] == "https://api.example.com/v1?key=[redacted]"
    assert record["headers"] == {"Authorization": "[redacted]", "X-Custom": "sig [redacted]", "X-Plain": "ok"}
    assert record["body"] == {"nested": [{"value": "prefix-[redacted]"}], "[redacted]": 1, "fine": "value", "n": 3}
    assert request.json["nested"][0]["value"] == f"prefix-{SECRET}"  # the request itself is untouched


def test_redact_always_hides_credential_headers_but_keeps_the_idempotency_key() -> None:
    names = ["Authorization", "proxy-authorization", "Cookie", "X-Api-Key", "Api-Key", "X-Auth-Token", "Client-Secret"]
    headers = dict.fromkeys(names, "anything") | {"Idempotency-Key": "act_1", "Accept": "application/json"}
    record = redact(Request("GET", "https://api.example.com", headers=headers))
    assert record["headers"] == dict.fromkeys(names, "[redacted]") | {
        "Idempotency-Key": "act_1",
        "Accept": "application/json",
    }
    assert record["method"] == "GET" and record["body"] is None


def test_redact_reads_a_json_data_body_and_scrubs_escaped_secrets() -> None:
    secret = 'quote"and/slash'
    data = json.dumps({"token": secret, "name": "Café"}, ensure_ascii=True).encode()
    record = redact(Request("POST", "https://x.example.com", data=data, secrets=(secret,)))
    assert record["body"] == {"token": "[redacted]", "name": "Café"}


def test_redact_finds_a_secret_spelled_with_unicode_escapes_in_a_data_body() -> None:
    spelled = "".join(f"\\u{ord(c):04x}" for c in SECRET)
    data = ('{"token": "' + spelled + '", "n": 1}').encode()
    record = redact(Request("POST", "https://x.example.com", data=data, secrets=(SECRET,)))
    assert record["body"] == {"token": "[redacted]", "n": 1}


def test_redact_finds_a_secret_with_characters_json_escapes_in_a_json_body() -> None:
    secret = 'clé-"secrète"\\n'
    request = Request("POST", "https://x.example.com", json={"a": [{"b": f"x{secret}y"}]}, secrets=(secret,))
    assert redact(request)["body"] == {"a": [{"b": "x[redacted]y"}]}


def test_a_body_without_secrets_is_recorded_as_it_is() -> None:
    body = {"a": [{"b": "plain"}], "n": 2}
    assert redact(Request("POST", "https://x.example.com", json=body, secrets=(SECRET,)))["body"] == body
    data = json.dumps(body).encode()
    assert redact(Request("POST", "https://x.example.com", data=data, secrets=(SECRET,)))["body"] == body


@pytest.mark.parametrize(
    "request_",
    [
        Request(
            "POST",
            f"https://x.example.com/?k={SECRET}",
            {"Authorization": SECRET},
            json={"a": SECRET},
            secrets=(SECRET,),
        ),
        Request("POST", "https://x.example.com", {"X-Plain": "ok"}, json={"a": ["Café", 1, None]}, secrets=(SECRET,)),
        Request("POST", "https://x.example.com", data=json.dumps({"t": SECRET, "n": "é"}).encode(), secrets=(SECRET,)),
        Request("POST", "https://x.example.com", data=b'{"plain": true}', secrets=(SECRET,)),
        Request("POST", "https://x.example.com", data=f"text {SECRET}".encode(), secrets=(SECRET,)),
        Request("GET", "https://x.example.com", secrets=(SECRET,)),
    ],
    ids=["json with secrets", "json without", "data with secrets", "data without", "text", "no body"],
)
def test_the_recorded_text_is_the_redacted_request(request_: Request) -> None:
    assert json.loads(redact_text(request_)) == json.loads(json.dumps(redact(request_)))
    assert json.loads(redact_text(request_, {"batch": {"events": 2}}))["batch"] == {"events": 2}
    assert SECRET not in redact_text(request_)


def test_the_recorded_text_walks_a_given_body_text_that_holds_a_secret() -> None:
    request = Request("POST", "https://x.example.com", json={"a": SECRET}, secrets=(SECRET,))
    assert json.loads(redact_text(request, body_text=json.dumps(request.json)))["body"] == {"a": "[redacted]"}


def test_redact_cuts_a_text_body_after_scrubbing_so_no_half_secret_is_left() -> None:
    data = b"a" * (BODY_LIMIT - 5) + SECRET.encode() + b"tail"
    record = redact(Request("POST", "https://x.example.com", data=data, secrets=(SECRET,)))
    assert len(record["body"]) == BODY_LIMIT
    assert record["body"].endswith("[reda")
    assert SECRET[:5] not in record["body"]


def test_redact_hides_url_encoded_secrets_and_the_longer_of_overlapping_ones() -> None:
    record = redact(Request("GET", "https://x.example.com/?k=a%2Bb%2Fc&t=abcdef", secrets=("a+b/c", "abc", "abcdef")))
    assert record["url"] == "https://x.example.com/?k=[redacted]&t=[redacted]"


def test_a_client_shows_no_secret_in_its_repr() -> None:
    assert repr(HttpClient(trusted_origins=["http://127.0.0.1:5000"])) == (
        "<HttpClient allow_private=False trusted=['http://127.0.0.1:5000']>"
    )


def test_a_recorder_gives_each_body_the_record_redact_gives_it() -> None:
    shared = Request(
        "POST", f"https://x.example.com/?k={SECRET}", {"Authorization": f"Bearer {SECRET}"}, secrets=(SECRET,)
    )
    recorder = Recorder(shared)
    for body in ({"a": "plain", "n": [1, "é"]}, {"token": SECRET}):
        request = Request(shared.method, shared.url, shared.headers, json=body, secrets=shared.secrets)
        record = json.loads(recorder.text(json.dumps(body), {"batch": {"position": 3}}))
        assert record == {**json.loads(json.dumps(redact(request))), "batch": {"position": 3}}
        assert SECRET not in json.dumps(record)


@pytest.mark.parametrize(
    "request_",
    [
        Request(
            "POST", "https://a.klaviyo.com/api/events", {"Authorization": "Klaviyo-API-Key pk_1"}, json={"a": [1, "é"]}
        ),
        Request("POST", "https://hooks.example.com/x?b=1&a=%20 2", {"content-type": "text/plain"}, data=b"raw \xff"),
        Request("POST", "https://hooks.example.com/x", {"Content-Type": "application/vnd.api+json"}, json={"k": None}),
        Request("post", "https://hooks.example.com/empty", {}, data=b""),
        Request("GET", "https://bücher.example/api/accounts/", {"Accept": "application/json"}),
        Request("DELETE", "https://hooks.example.com/x", {"User-Agent": "mine"}),
    ],
)
def test_a_request_is_prepared_exactly_as_requests_prepares_it(request_: Request) -> None:
    client = HttpClient()
    expected = requests.PreparedRequest()
    expected.prepare(
        method=request_.method,
        url=request_.url,
        headers={**client.session.headers, **request_.headers},
        json=request_.json if request_.data is None else None,
        data=request_.data,
    )
    for _ in range(2):  # the second time from the prepared-URL cache
        prepared = client.prepare(request_)
        assert (prepared.method, prepared.url, prepared.body) == (expected.method, expected.url, expected.body)
        assert dict(prepared.headers) == dict(expected.headers)


def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent(server: LocalServer) -> None:
    client = HttpClient(allow_private=True)
    smuggled = Request("POST", f"{server.url}/hook", {"X-Note": "a\r\nX-Evil: 1"}, data=b"{}")
    with pytest.raises(TransportError) as refused:
        client.send(smuggled)
    assert refused.value.kind == "connection"
    assert server.received == []


def test_an_answer_that_names_no_charset_is_read_as_utf_8_without_guessing(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_guessing(self: requests.Response) -> str:
        raise AssertionError("the encoding was guessed")

    monkeypatch.setattr(requests.Response, "apparent_encoding", property(no_guessing))
    response = HttpClient(allow_private=True).send(Request("GET", f"{server.url}/big"))
    assert response.headers.get("Content-Type") is None
    assert response.encoding == "utf-8" and response.text == "x" * RESPONSE_LIMIT
