"""A TCP proxy in front of a Kafka-protocol broker that can refuse produce requests to chosen
topics, for broker-outage tests.

The broker must advertise the proxy's address (``ProxiedBroker``) so that clients keep talking
through it after bootstrap. While ``blocked_topics`` is set, a connection that sends a Produce
request for one of them is closed before the request reaches the broker: for the producer that
is a broker that went away (it reconnects and retries until the batch times out), while fetches,
metadata, group membership and produce requests for other topics pass. Nothing is lost or
altered on the way: a request is forwarded whole or not at all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from streams.kafka.broker import EmbeddedBroker, free_port

PRODUCE = 0


class ProxiedBroker(EmbeddedBroker):
    """An embedded broker that advertises another address (the proxy in front of it)."""

    def __init__(self, advertised_port: int) -> None:
        super().__init__()
        self.advertised_port = advertised_port

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--advertised-listener-url") + 1
        cmd[at] = f"tcp://{self.host}:{self.advertised_port}"
        return cmd


def produce_topics(request: bytes) -> list[str]:
    """Topic names of a Produce request (v3-v8, the non-flexible versions aiokafka sends)."""
    api_key, version, _ = struct.unpack_from(">hhi", request)
    if api_key != PRODUCE or not 3 <= version <= 8:
        return []
    (n,) = struct.unpack_from(">h", request, 8)
    at = 10 + max(n, 0)  # after client_id
    (n,) = struct.unpack_from(">h", request, at)
    at += 2 + max(n, 0) + 2 + 4  # transactional_id, acks, timeout
    (count,) = struct.unpack_from(">i", request, at)
    at += 4
    topics = []
    for _ in range(count):
        (n,) = struct.unpack_from(">h", request, at)
        topics.append(request[at + 2 : at + 2 + n].decode())
        at += 2 + n
        (partitions,) = struct.unpack_from(">i", request, at)
        at += 4
        for _ in range(partitions):
            (size,) = struct.unpack_from(">i", request, at + 4)
            at += 8 + max(size, 0)
    return topics


class KafkaProxy:
    """Forwards 127.0.0.1:<port> to the broker, frame by frame from the client side."""

    def __init__(self) -> None:
        self.port = free_port()
        self.upstream_port = 0
        self.blocked_topics: frozenset[str] = frozenset()
        self.refused = 0  # produce requests refused so far
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread in accept()
            self._listener.close()
            self._listener = None
        self._close(*list(self._open))  # shutdown() first: it wakes the threads in recv()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client), daemon=True).start()

    def _close(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while True:
                head = _read_exact(client, 4)
                if head is None:
                    break
                (size,) = struct.unpack(">i", head)
                body = _read_exact(client, size)
                if body is None:
                    break
                blocked = self.blocked_topics
                if blocked and blocked.intersection(produce_topics(body)):
                    self.refused += 1
                    break  # the broker "went away" before it saw this request
                upstream.sendall(head + body)
        except OSError:
            pass
        self._close(client, upstream)

    def _responses(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
