"""A tiny in-process Confluent schema registry (the REST subset the codec uses), for tests.

``serving()`` runs it on a loopback port; ``stop()`` and ``start()`` take it away and bring it
back on the same port with the same schemas, which is how outage tests simulate a registry that
goes down and recovers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeRegistry:
    """The subset of the Confluent Schema Registry REST API that the codec uses."""

    def __init__(self) -> None:
        self.schemas: list[str] = []  # id = index + 1
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self.port = 0
        self.types: dict[int, str] = {}  # schema id -> schemaType, when not AVRO
        self.failing: int | None = None  # an HTTP status to answer every request with
        self._server: ThreadingHTTPServer | None = None

    def register(self, subject: str, schema_text: str) -> int:
        if schema_text in self.schemas:
            sid = self.schemas.index(schema_text) + 1
        else:
            self.schemas.append(schema_text)
            sid = len(self.schemas)
        versions = self.subjects.setdefault(subject, [])
        if sid not in versions:
            versions.append(sid)
        return sid

    def start(self) -> None:
        """Serve on ``self.port`` (a free one the first time); ``self.url`` stays the same."""
        server = _Server(("127.0.0.1", self.port), _handler(self))
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self._server = server

    def stop(self) -> None:
        """Close the port: clients get "connection refused" until ``start()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def serving(self) -> Iterator[FakeRegistry]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def _handler(reg: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            reg.requests.append(("POST", self.path))
            if reg.failing is not None:
                self._send(reg.failing, {"error_code": reg.failing, "message": "failing"})
                return
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._send(200, {"id": reg.register(parts[1], body["schema"])})
            else:
                self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

        def do_GET(self) -> None:
            reg.requests.append(("GET", self.path))
            if reg.failing is not None:
                self._send(reg.failing, {"error_code": reg.failing, "message": "failing"})
                return
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
                sid = int(parts[2])
                if 1 <= sid <= len(reg.schemas):
                    body = {"schema": reg.schemas[sid - 1]}
                    if sid in reg.types:
                        body["schemaType"] = reg.types[sid]
                    self._send(200, body)
                    return
                self._send(404, {"error_code": 40403, "message": "Schema not found"})
            else:
                self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
