"""A stub platform on 127.0.0.1: answers every POST with 202 as fast as it can (asyncio, keep-alive).

It counts requests and distinct idempotency keys (webhook-id / Idempotency-Key headers, or the
`unique_id` of every event in a Klaviyo Bulk Create Events body) so a run can check that nothing was
lost. One process; the ceiling and the hub talk to the same stub.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
from typing import Any

import orjson

from hub.runtime import collector_paused

RESPONSE = b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
STATS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
KEY_HEADERS = (b"webhook-id", b"idempotency-key")


class Stub:
    def __init__(self) -> None:
        self.requests = 0
        self.keys: set[bytes] = set()
        self.events = 0  # events in bulk bodies (JSON:API "data" arrays count one per item)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, key = 0, None
                request_line, *lines = head.split(b"\r\n")
                for line in lines:
                    name, _, value = line.partition(b":")
                    lowered = name.strip().lower()
                    if lowered == b"content-length":
                        length = int(value)
                    elif lowered in KEY_HEADERS:
                        key = value.strip()
                body = await reader.readexactly(length) if length else b""
                if request_line.startswith(b"GET /stats"):
                    payload = json.dumps(
                        {"requests": self.requests, "keys": len(self.keys), "events": self.events}
                    ).encode()
                    writer.write(STATS % (len(payload), payload))
                elif request_line.startswith(b"POST /reset"):
                    self.requests, self.events = 0, 0
                    self.keys.clear()
                    writer.write(RESPONSE)
                else:
                    self.requests += 1
                    if key:
                        self.keys.add(key)
                    if b"/event-bulk-create-jobs" in request_line:
                        unique_ids = _bulk_unique_ids(body)
                        self.keys.update(unique_ids)
                        self.events += len(unique_ids)
                    else:
                        self.events += 1
                    writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _bulk_unique_ids(body: bytes) -> list[bytes]:
    """Every event's unique_id in a Bulk Create Events body (one event-bulk-create entry per profile).

    With the collector paused, as the hub pauses it for a batch: a ~470 kB body makes tens of thousands of objects,
    whose collections cost the stub 13 ms a body against 2.4 ms for the parse itself. The stub stands in for a
    platform that runs elsewhere; its CPU here is the bench's, taken from the cores the hub is measured on."""
    try:
        with collector_paused():
            data: Any = orjson.loads(body)
            return [
                str(event["attributes"].get("unique_id")).encode()
                for entry in data["data"]["attributes"]["events-bulk-create"]["data"]
                for event in entry["attributes"]["events"]["data"]
            ]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []


def serve(sock: socket.socket) -> None:
    async def main() -> None:
        stub = Stub()
        server = await asyncio.start_server(stub.handle, sock=sock, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start() -> tuple[multiprocessing.Process, str]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    process = multiprocessing.Process(target=serve, args=(sock,), daemon=True)
    process.start()
    sock.close()
    return process, f"http://127.0.0.1:{port}"
