"""``vigil health``: ready -> exit 0 with the /healthz JSON; not ready -> exit 1 with the reason;
``--wait`` keeps polling through 503s until the worker is ready."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from streams.cli import vigil
from streams.kafka.broker import free_port


class FakeWorker(ThreadingHTTPServer):
    """A /healthz that answers 503 ``not_ready`` times, then 200 (a worker starting up)."""

    not_ready = 0
    calls = 0


class Handler(BaseHTTPRequestHandler):
    server: FakeWorker

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.calls += 1
        ready = self.server.calls > self.server.not_ready
        body = json.dumps({"ready": ready, "partitions": [0, 1] if ready else []}).encode()
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def worker() -> Iterator[FakeWorker]:
    server = FakeWorker(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def health(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(vigil, ["health", *args])
    return result.exit_code, result.stdout, result.stderr


def test_ready_worker(worker: FakeWorker) -> None:
    code, out, _ = health("--web-port", str(worker.server_port))
    assert code == 0
    assert json.loads(out) == {"ready": True, "partitions": [0, 1]}


def test_not_ready_without_wait_fails_at_once(worker: FakeWorker) -> None:
    worker.not_ready = 100
    code, out, err = health("--web-port", str(worker.server_port))
    assert code == 1 and out == ""
    assert "is not ready: HTTP 503" in err
    assert worker.calls == 1


def test_wait_polls_until_ready(worker: FakeWorker) -> None:
    worker.not_ready = 3
    code, out, _ = health("--web-port", str(worker.server_port), "--wait", "--timeout", "120")
    assert code == 0
    assert json.loads(out)["ready"] is True
    assert worker.calls == 4


def test_wait_gives_up_after_the_timeout() -> None:
    code, _, err = health("--web-port", str(free_port()), "--wait", "--timeout", "0.5")
    assert code == 1
    assert "not ready after 0.5 s: no answer" in err


def test_port_from_the_environment(worker: FakeWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_WEB_PORT", str(worker.server_port))
    code, _, _ = health()
    assert code == 0
