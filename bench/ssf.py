"""Shared Signals benchmark: SETs accepted per second by one worker (signature verification
included) and SET received -> revocation latency, on an embedded broker.

    .venv/bin/python -m bench.ssf            # ≈1 min
    .venv/bin/python -m bench.ssf --quick    # smoke run
    .venv/bin/python -m bench.run --only f   # the same, as part (f) of ``make bench``

Three figures, no thresholds:

* ``verify_map_per_s``: SET verification (ES256) + subject/event mapping in process, no Kafka:
  the CPU cost of a SET;
* ``push_accepted_per_s``: SETs POSTed to ``/ssf/push`` of one worker with ``--concurrency``
  requests in flight, each answered 202 only after Kafka acknowledged its signal;
* ``revocation_latency_ms``: from POSTing a SET that revokes one grant to that revocation
  being read from ``authz.revocations`` (p50, p95, p99, max), one SET at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from joserfc import jws
from joserfc.jwk import ECKey

from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.security import PLAINTEXT
from streams.ssf.config import SsfConfig
from streams.ssf.events import CAEP, RISC
from streams.ssf.mapping import NoLocator, signals_for
from streams.ssf.verify import SetVerifier

REPO = Path(__file__).resolve().parents[1]
ISSUER = "https://idp.bench/"
AUDIENCE = "https://vigil.bench/"
ROLES = (
    "identity",
    "device",
    "network",
    "risk",
    "grants",
    "decisions",
    "revocations",
    "deadletter",
)


def _key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "bench"}, private=True)


def _set(key: ECKey, user: str, event: str = RISC + "account-disabled") -> bytes:
    claims = {
        "iss": ISSUER,
        "jti": uuid.uuid4().hex,
        "iat": int(time.time()),
        "aud": AUDIENCE,
        "sub_id": {"format": "iss_sub", "iss": ISSUER, "sub": user},
        "events": {event: {"event_timestamp": int(time.time())}},
    }
    header = {"alg": "ES256", "kid": "bench", "typ": "secevent+jwt"}
    return jws.serialize_compact(header, orjson.dumps(claims), key, algorithms=["ES256"]).encode()


def _config(jwks: Path) -> dict[str, Any]:
    return {
        "audience": AUDIENCE,
        "transmitters": [
            {"name": "idp", "issuer": ISSUER, "jwks_uri": str(jwks), "algorithms": ["ES256"]}
        ],
    }


async def verify_map(key: ECKey, jwks: Path, n: int) -> float:
    config = SsfConfig.model_validate(_config(jwks))
    verifier = SetVerifier(config)
    tokens = [_set(key, f"u{i}", CAEP + "session-revoked") for i in range(n)]
    await verifier.verify(tokens[0])  # loads the JWKS
    started = time.perf_counter()
    for token in tokens:
        signals_for(await verifier.verify(token), NoLocator())
    return n / (time.perf_counter() - started)


async def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            await asyncio.sleep(0.25)


async def _push(session: aiohttp.ClientSession, url: str, token: bytes) -> int:
    headers = {"Content-Type": "application/secevent+jwt"}
    async with session.post(url, data=token, headers=headers) as resp:
        await resp.read()
        return resp.status


def sizes(quick: bool) -> tuple[int, int]:
    """(SETs pushed for the rate, SETs for the latency samples)."""
    return (400, 10) if quick else (4000, 100)


async def run(
    n: int, concurrency: int, latency_n: int, bootstrap: str | None = None
) -> dict[str, Any]:
    """Every figure; on the broker at ``bootstrap`` (unique topic names), else on an embedded
    broker of its own."""
    results: dict[str, Any] = {"sets_pushed": n, "concurrency": concurrency}
    with contextlib.ExitStack() as stack:
        tmp_path = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if bootstrap is None:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap
        key = _key()
        jwks = tmp_path / "jwks.json"
        jwks.write_bytes(orjson.dumps({"keys": [key.as_dict(private=False)]}))
        results["verify_map_per_s"] = round(await verify_map(key, jwks, max(200, n // 4)))

        suffix = uuid.uuid4().hex[:8]
        topics = {role: f"bench-ssf-{role}-{suffix}" for role in ROLES}
        topics["changelog"] = f"bench-ssf-changelog-{suffix}"
        topics["bundles"] = f"bench-ssf-bundles-{suffix}"
        topics["ssf_received"] = f"bench-ssf-received-{suffix}"
        await ensure_topics(
            bootstrap,
            [topics[r] for r in ROLES],
            2,
            compacted=[topics["changelog"]],
        )
        await ensure_topics(bootstrap, [], 1, compacted=[topics["bundles"]])
        config = tmp_path / "ssf.yaml"
        config.write_text(yaml.safe_dump(_config(jwks)))
        api, web = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_KAFKA_")}
        env.update({f"VIGIL_TOPIC_{k.upper()}": v for k, v in topics.items()})
        env.update(
            {
                "VIGIL_BROKER": bootstrap,
                "VIGIL_GROUP_ID": f"bench-ssf-{suffix}",
                "VIGIL_PARTITIONS": "2",
                "VIGIL_DATA_DIR": str(tmp_path / "data"),
                "VIGIL_WEB_PORT": str(web),
                "VIGIL_API_PORT": str(api),
                "VIGIL_SSF_CONFIG": str(config),
                "VIGIL_POLICIES": str(REPO / "policies"),
                "VIGIL_OUTPUT_FORMAT": "json",
            }
        )
        log = (tmp_path / "worker.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            await _wait_http(f"http://127.0.0.1:{web}/healthz", proc)
            url = f"http://127.0.0.1:{api}/ssf/push"
            tokens = [_set(key, f"bulk-{i}") for i in range(n)]
            async with aiohttp.ClientSession() as session:
                while await _push(session, url, tokens[0]) == 503:  # the receiver is starting
                    await asyncio.sleep(0.2)
                queue: asyncio.Queue[bytes] = asyncio.Queue()
                for token in tokens[1:]:
                    queue.put_nowait(token)
                statuses: list[int] = []

                async def pusher() -> None:
                    while not queue.empty():
                        statuses.append(await _push(session, url, queue.get_nowait()))

                started = time.perf_counter()
                await asyncio.gather(*(pusher() for _ in range(concurrency)))
                elapsed = time.perf_counter() - started
                results["push_accepted_per_s"] = round(statuses.count(202) / elapsed)
                results["push_non_202"] = len(statuses) - statuses.count(202)
                results["revocation_latency_ms"] = await _latency(
                    bootstrap, topics, session, url, key, latency_n
                )
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return results


async def _latency(
    bootstrap: str,
    topics: dict[str, str],
    session: aiohttp.ClientSession,
    url: str,
    key: ECKey,
    n: int,
) -> dict[str, float]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", **PLAINTEXT.client_kwargs()
    )
    await producer.start()
    now_ms = int(time.time() * 1000) - 60_000
    for i in range(n):
        grant = {
            "op": "issued",
            "grant_id": f"lat-{i}",
            "principal": {"id": f"lat-{i}", "roles": ["employee"], "attr": {}},
            "resource": {"kind": "document", "id": "d", "attr": {}},
            "actions": ["read"],
            "issued_at": now_ms,
        }
        await producer.send_and_wait(
            topics["grants"], orjson.dumps(grant), key=f"user:lat-{i}".encode()
        )
    await producer.stop()
    await asyncio.sleep(3)  # the grants are applied
    consumer = AIOKafkaConsumer(
        topics["revocations"],
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=5,
        **PLAINTEXT.client_kwargs(),
    )
    await consumer.start()
    samples = []
    try:
        for i in range(n):
            started = time.perf_counter()
            assert await _push(session, url, _set(key, f"lat-{i}")) == 202
            while True:
                batch = await consumer.getmany(timeout_ms=5000)
                records = [r for rs in batch.values() for r in rs]
                if any(orjson.loads(r.value).get("grant_id") == f"lat-{i}" for r in records):
                    break
                if not records:
                    raise TimeoutError(f"no revocation for lat-{i}")
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        await consumer.stop()
    samples.sort()

    def rank(q: float) -> float:  # nearest rank
        return round(samples[max(0, math.ceil(len(samples) * q) - 1)], 1)

    return {
        "samples": len(samples),
        "p50": round(statistics.median(samples), 1),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(samples[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    n, latency_n = sizes(args.quick)
    results = asyncio.run(run(n, args.concurrency, latency_n))
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
