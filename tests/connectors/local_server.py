"""A real HTTP/1.1 server on 127.0.0.1 for the HTTP client's tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LocalServer:
    """/redirect answers 302 to the metadata address, /slow stalls before answering, /stall half-way
    through the body, /big sends more than HttpClient keeps; anything else answers 202.
    It notes each request (path, headers, body) and the client port it came from."""

    def __init__(self) -> None:
        self.client_ports: list[int] = []
        self.received: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.client_ports.append(self.client_address[1])
                server.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                payload = b""
                path = self.path.split("?", 1)[0]
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data")
                elif path == "/slow":
                    time.sleep(1.0)
                    self.send_response(202)
                elif path == "/stall":  # headers, then part of the body, then nothing
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"partial")
                    self.wfile.flush()
                    time.sleep(1.0)
                    return
                elif path == "/big":
                    payload = b"x" * 1_500_000
                    self.send_response(200)
                else:
                    self.send_response(202)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
