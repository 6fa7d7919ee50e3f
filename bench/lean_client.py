"""P5's load generator: keep-alive HTTP/1.1 over plain sockets, several connections a process, each with one request
in flight.

The ceiling is what the server side can do; a client that spends as much CPU on a request as the server does takes
half the two cores from both servers and squeezes their ratio towards 1. ``requests`` spends ~700–1,000 µs a
request here (as much as gunicorn and Flask together); this client writes each request as bytes and reads the
answer by its Content-Length, ~20–40 µs a request, as wrk or hey would, so each server gets the cores. The ingest
ceiling then measures what issue 5 measured on this machine (about 2,300–3,000 requests/s).
"""

from __future__ import annotations

import json
import selectors
import socket
import time
from typing import Any
from urllib.parse import urlsplit


class Refused(RuntimeError):
    """An answer other than 2xx: the run's figure would count something that was not done."""


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.closing = False  # the last answer said "Connection: close" (gunicorn's sync workers always do)

    def answer(self) -> int | None:
        """Read what has arrived; the status of the whole answer when it is complete, else None."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self.buffer[:head_end]
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection" and value.strip().lower() == b"close":
                self.closing = True
        if len(self.buffer) < head_end + 4 + length:
            return None
        status = int(head[9:12])
        self.buffer = self.buffer[head_end + 4 + length :]
        return status


def request_bytes(path: str, host: str, token: str, body: dict[str, Any], headers: str = "") -> bytes:
    """The request, with ``headers`` (each line ending in CRLF) after the usual ones."""
    data = json.dumps(body).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{headers}\r\n"
    ).encode() + data


def trigger(prefix: object, n: int) -> dict[str, Any]:
    """P5's trigger number ``n``: a new order of a new customer (both named after ``prefix``). Every P5 client and
    bench.inprocess_ingest send these."""
    return {
        "type": "order.fulfilled",
        "customer": {"email": f"c{prefix}-{n}@example.com"},
        "order": {"id": f"{prefix}-{n}", "items": [{"product_id": "p-1", "name": "Linen Shirt"}]},
    }


CONNECTIONS = 4  # a process's connections, each with one request in flight
# Requests a connection carries before the client opens another in its place. A server's workers share one listening
# socket, and which of them accepts a connection is a race: with 16 connections held for a whole turn, the split
# between gunicorn's two workers came out anywhere from 16/0 to 8/8, and a worker holding most of them was the
# bottleneck while the other idled. Connections that come and go, as a real sender's do, spread the load over the
# turn, alike for every server measured.
REQUESTS_PER_CONNECTION = 100


def run(url: str, token: str, seconds: float, worker: int, counter: Any, start: Any, headers: str = "") -> None:
    """Post P5's triggers to ``url`` on CONNECTIONS connections until ``seconds`` have passed; add the answers
    (all 2xx, or it raises) to ``counter``. Connection ``c`` of client ``worker`` names its triggers after
    ``worker * CONNECTIONS + c``. ``headers``: more header lines for every request."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    selector = selectors.DefaultSelector()
    connections = [Connection(host, port) for _ in range(CONNECTIONS)]
    sent = dict.fromkeys(range(CONNECTIONS), 0)
    carried = dict.fromkeys(range(CONNECTIONS), 0)  # answers on the connection now open
    for index, connection in enumerate(connections):
        selector.register(connection.sock, selectors.EVENT_READ, index)
    start.wait()
    deadline = time.perf_counter() + seconds
    done = 0
    host_header = f"{host}:{port}"

    def send(index: int) -> None:
        body = trigger(worker * CONNECTIONS + index, sent[index])
        connections[index].sock.sendall(request_bytes(parts.path, host_header, token, body, headers))
        sent[index] += 1

    for index in range(CONNECTIONS):
        send(index)
    in_flight = CONNECTIONS
    while in_flight:
        for key, _ in selector.select():
            index = key.data
            status = connections[index].answer()
            if status is None:
                continue
            if not 200 <= status < 300:
                raise Refused(f"{url} answered {status}")
            done += 1
            carried[index] += 1
            # The server ends the connection after each answer, or this one has carried its share: open another.
            if connections[index].closing or carried[index] >= REQUESTS_PER_CONNECTION:
                carried[index] = 0
                selector.unregister(connections[index].sock)
                connections[index].sock.close()
                connections[index] = Connection(host, port)
                selector.register(connections[index].sock, selectors.EVENT_READ, index)
            if time.perf_counter() < deadline:
                send(index)
            else:
                in_flight -= 1
    for connection in connections:
        connection.sock.close()
    with counter.get_lock():
        counter.value += done


def run_async(url: str, token: str, seconds: float, worker: int, counter: Any, start: Any) -> None:
    """``run``, each trigger sent with ``Prefer: respond-async``: the hub stores it and answers before its flows run."""
    run(url, token, seconds, worker, counter, start, headers="Prefer: respond-async\r\n")
