"""HTTP load generator of the check bench, run as its own process (``bench.check_api`` starts it).

Keep-alive HTTP/1.1 connections and request bytes built before the clock starts, read by a small
asyncio client (status line, ``Content-Length`` or chunked body): a general client such as
aiohttp costs several times more CPU per request, and on a 2-core machine the load generator's
CPU is taken from the servers it measures.

* closed loop (``--connections C``, no ``--rate``): C connections, each sending its next request
  as soon as the previous answer arrived: the server's saturation throughput;
* open loop (``--rate R``): request *i* is due at ``start + i / R`` whatever the answers do, and
  its latency runs from that due time (a backlog shows as latency: no coordinated omission); up
  to C connections carry the requests, a due request waits for a free one. How late the
  generator itself put requests on their way (``generator_late_*``: it competes for the CPU
  too) tells whether a latency figure is the server's or the generator's.

Requests go round-robin through the bodies (one JSON document per line of ``--bodies``). The
first ``--warmup`` seconds are not counted. Prints one JSON object: counts, achieved rate,
latency percentiles in milliseconds, HTTP status counts. Not a test: no thresholds.

    .venv/bin/python -m bench.http_load --url http://127.0.0.1:3592 --bodies reqs.jsonl \\
        --connections 16 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

PATH = "/api/check/resources"


def summarize(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds (nearest rank), two decimals."""
    if not latencies:
        return {}
    v = sorted(latencies)

    def rank(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 2)

    return {
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "p999_ms": rank(0.999),
        "max_ms": rank(1.0),
        "mean_ms": round(sum(v) / len(v) * 1000, 2),
    }


def encode_requests(url: str, bodies: Sequence[bytes], path: str = PATH) -> list[bytes]:
    """Each body as a complete HTTP/1.1 POST (keep-alive is HTTP/1.1's default)."""
    host = urlsplit(url).netloc
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]


class Connection:
    """One keep-alive connection; ``send`` writes a prepared request and reads the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers from either server
                return status, bytes(body)
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class Tally:
    """What a run counted after its warm-up."""

    counting_from: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    total: int = 0  # warm-up included: what the servers' CPU time is divided by

    def record(self, due: float, status: int) -> None:
        done = time.perf_counter()
        self.total += 1
        if due >= self.counting_from:
            self.latencies.append(done - due)
            self.statuses[status] += 1


async def closed_loop(
    url: str, requests: list[bytes], connections: int, warmup: float, seconds: float
) -> dict[str, Any]:
    conns = [await Connection.open(url) for _ in range(connections)]
    start = time.perf_counter()
    tally = Tally(start + warmup)
    end = tally.counting_from + seconds
    cursor = 0

    async def run(conn: Connection) -> None:
        nonlocal cursor
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            request = requests[cursor % len(requests)]
            cursor += 1
            status, _ = await conn.send(request)
            tally.record(sent, status)

    await asyncio.gather(*(run(c) for c in conns))
    for c in conns:
        c.close()
    return _result("closed", tally, seconds, connections=connections)


async def open_loop(
    url: str,
    requests: list[bytes],
    connections: int,
    rate: float,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    conns = [await Connection.open(url) for _ in range(connections)]
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    start = time.perf_counter() + 0.05
    tally = Tally(start + warmup)
    total = int(rate * (warmup + seconds))
    lateness: list[float] = []

    async def run(conn: Connection) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            due, request = item
            status, _ = await conn.send(request)
            tally.record(due, status)

    workers = [asyncio.create_task(run(c)) for c in conns]
    i = 0
    while i < total:
        now = time.perf_counter()
        while i < total and start + i / rate <= now:  # everything due by now, late or not
            due = start + i / rate
            queue.put_nowait((due, requests[i % len(requests)]))
            if due >= tally.counting_from:
                lateness.append(now - due)  # the generator's own delay, not the server's
            i += 1
        if i < total:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    for c in conns:
        c.close()
    late = summarize(lateness)
    return _result(
        "open",
        tally,
        seconds,
        connections=connections,
        rate=rate,
        generator_late_p99_ms=late.get("p99_ms", 0.0),
        generator_late_max_ms=late.get("max_ms", 0.0),
    )


def _result(mode: str, tally: Tally, seconds: float, **params: Any) -> dict[str, Any]:
    n = len(tally.latencies)
    return {
        "mode": mode,
        **params,
        "seconds": seconds,
        "requests": n,
        "requests_incl_warmup": tally.total,
        "rate": round(n / seconds, 1),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": sum(v for k, v in tally.statuses.items() if k != 200),
        **summarize(tally.latencies),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON lines, one request each")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate (req/s)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    bodies = [line for line in args.bodies.read_bytes().splitlines() if line.strip()]
    requests = encode_requests(args.url, bodies)
    if args.rate > 0:
        run = open_loop(args.url, requests, args.connections, args.rate, args.warmup, args.seconds)
    else:
        run = closed_loop(args.url, requests, args.connections, args.warmup, args.seconds)
    print(orjson.dumps(asyncio.run(run)).decode(), flush=True)


if __name__ == "__main__":
    main()
