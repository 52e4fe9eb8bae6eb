"""Stream management as a receiver against a simulated SSF transmitter: a worker discovers it,
creates its stream (push to its own /ssf/push), requests verification and sees the state come
back; an existing stream that differs is updated; `vigil ssf status` shows the stream."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml

from streams.ssf.config import SsfConfig
from streams.ssf.management import DEFAULT_EVENTS, StreamClient, well_known_url
from tests.kafka_helpers import unique_name
from tests.pipeline.worker_harness import Worker
from tests.ssf.helpers import AUDIENCE, Signer
from tests.ssf.management_transmitter import ManagedTransmitter

ROOT = Path(__file__).resolve().parents[2]
SIGNER = Signer("managed")


@pytest.fixture
async def transmitter() -> AsyncIterator[ManagedTransmitter]:
    managed = ManagedTransmitter(SIGNER, "Bearer mgmt")
    await managed.start()
    try:
        yield managed
    finally:
        await managed.stop()


def _config(managed: ManagedTransmitter, push_url: str) -> dict[str, object]:
    return {
        "audience": AUDIENCE,
        "transmitters": [
            {
                "name": "managed",
                "issuer": managed.issuer,
                "jwks_uri": managed.issuer + "jwks",
                "push_authorization": "Bearer push-in",
                "manage_stream": True,
                "management_authorization": "Bearer ${MGMT_TOKEN}",
                "push_endpoint_url": push_url,
            }
        ],
    }


def test_well_known_url_goes_before_the_issuer_path() -> None:
    assert well_known_url("https://tr.example.com/") == (
        "https://tr.example.com/.well-known/ssf-configuration"
    )
    assert well_known_url("https://tr.example.com/tenant/1") == (
        "https://tr.example.com/.well-known/ssf-configuration/tenant/1"
    )


async def test_worker_creates_and_verifies_its_stream(
    start_worker: Callable[..., Worker], tmp_path: Path, transmitter: ManagedTransmitter
) -> None:
    worker = start_worker()
    path = tmp_path / "ssf.yaml"
    path.write_text(yaml.safe_dump(_config(transmitter, f"{worker.api_url}/ssf/push")))
    worker.extra_env.update(
        {
            "VIGIL_SSF_CONFIG": str(path),
            "MGMT_TOKEN": "mgmt",
            "VIGIL_TOPIC_SSF_RECEIVED": unique_name("vigil.ssf-received"),
        }
    )
    await worker.start()
    deadline = time.monotonic() + 60
    while worker.metric("vigil_ssf_stream_verified") != 1:
        assert time.monotonic() < deadline, worker.log()
        await asyncio.sleep(0.3)
    (stream,) = transmitter.streams.values()
    assert stream["delivery"] == {
        "method": "urn:ietf:rfc:8935",
        "endpoint_url": f"{worker.api_url}/ssf/push",
        "authorization_header": "Bearer push-in",
    }
    assert stream["events_requested"] == DEFAULT_EVENTS
    assert transmitter.pushed == [202]

    env = {**os.environ, "MGMT_TOKEN": "mgmt"}
    # not subprocess.run: the simulated transmitter answers from this test's event loop
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        "ssf",
        "status",
        "--ssf-config",
        str(path),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, (out, err)
    stdout = out.decode()
    (row,) = [json.loads(line) for line in stdout.splitlines()]
    assert row["stream_id"] == stream["stream_id"] and row["status"] == "enabled"
    assert row["delivery_method"] == "urn:ietf:rfc:8935"
    assert row["events_delivered"] == 3


async def test_an_existing_stream_that_differs_is_updated(transmitter: ManagedTransmitter) -> None:
    config = SsfConfig.model_validate(
        json.loads(
            json.dumps(_config(transmitter, "https://vigil.example.com/ssf/push")).replace(
                "${MGMT_TOKEN}", "mgmt"
            )
        )
    )
    async with aiohttp.ClientSession() as session:
        client = StreamClient(config.transmitters[0], session)
        await client.discover()
        created = await client.ensure()
        assert transmitter.calls[-1] == ("POST", "/ssf/stream")
        assert await client.ensure() == created  # nothing differs: no update
        assert transmitter.calls[-1] == ("GET", "/ssf/stream")
        transmitter.streams[created["stream_id"]]["events_requested"] = ["x"]
        updated = await client.ensure()
        assert transmitter.calls[-1] == ("PATCH", "/ssf/stream")
        assert updated["stream_id"] == created["stream_id"]
        assert updated["events_requested"] == DEFAULT_EVENTS
        assert (await client.status(created["stream_id"]))["status"] == "enabled"
