"""Poll delivery end to end: a worker polls a transmitter simulated here (RFC 8936), turns its
SETs into revocations, acknowledges each SET only once its signal is on the signal topic,
reports refused SETs in ``setErrs`` with their code, and acknowledges a redelivered SET again
without a second signal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.kafka_helpers import consume_all, unique_name
from tests.pipeline.worker_harness import Worker
from tests.ssf.helpers import Signer, complex_, config_yaml, iss_sub, opaque, set_claims
from tests.ssf.poll_transmitter import PollTransmitter
from tests.ssf.test_ssf_push_worker import POLICY, grant

SIGNER = Signer("poll")


async def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


async def test_poll_transmitter_drives_revocations(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = start_worker()
    written_when_acked: dict[str, bool] = {}

    async def on_ack(jti: str) -> None:
        records = await consume_all(worker.bootstrap, worker.topics["identity"])
        values = [orjson.loads(r.value) for r in records]
        written_when_acked[jti] = any(v["attributes"].get("ssf_jti") == jti for v in values)

    transmitter = PollTransmitter("Bearer poll-secret", on_ack)
    await transmitter.start()
    try:
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "document.yaml").write_text(POLICY)
        config = tmp_path / "ssf.yaml"
        config.write_text(
            config_yaml(
                str(SIGNER.write_jwks(tmp_path / "jwks.json")),
                delivery="poll",
                poll_endpoint=transmitter.endpoint,
                poll_authorization="Bearer ${IDP_POLL_TOKEN}",
                poll_interval_seconds=0.2,
            )
        )
        worker.policies = policies
        worker.extra_env.update(
            {
                "VIGIL_SSF_CONFIG": str(config),
                "IDP_POLL_TOKEN": "poll-secret",
                "VIGIL_TOPIC_SSF_RECEIVED": unique_name("vigil.ssf-received"),
                "VIGIL_OUTPUT_FORMAT": "json",
            }
        )
        await worker.start()
        now_s = int(time.time())
        before = (now_s - 60) * 1000
        for g in (
            grant("p-sess-a", "p-user", before, session="s1"),
            grant("p-sess-b", "p-user", before, session="s2"),
            grant("p-disabled", "p-dis", before),
            grant("p-bad", "p-bad", before),
        ):
            await worker.produce_raw(
                "grants", f"user:{g['principal']['id']}".encode(), orjson.dumps(g)
            )
        await worker.wait_processed()

        sets = [
            set_claims(
                "session-revoked",
                {"event_timestamp": now_s - 5},
                complex_(user=iss_sub("p-user"), session=opaque("s1")),
            ),
            set_claims("account-disabled", {"event_timestamp": now_s - 5}, iss_sub("p-dis")),
        ]
        bad = set_claims(
            "account-disabled", {"event_timestamp": now_s - 5}, iss_sub("p-bad"), aud="nope"
        )
        for claims in [*sets, bad]:
            transmitter.add(claims["jti"], SIGNER.sign(claims))
        good_jtis = [c["jti"] for c in sets]
        await _wait_for(
            lambda: set(good_jtis) <= set(transmitter.acked) and bad["jti"] in transmitter.errors
        )
        assert written_when_acked == {jti: True for jti in good_jtis}
        assert transmitter.errors[bad["jti"]]["err"] == "invalid_audience"
        assert bad["jti"] not in transmitter.acked
        assert transmitter.unauthorized == 0

        # redelivery of an acknowledged SET: acknowledged again, no second signal
        transmitter.add(sets[1]["jti"], SIGNER.sign(sets[1]))
        await _wait_for(lambda: transmitter.acked.count(sets[1]["jti"]) == 2)

        await worker.wait_processed()
        revoked = {r["grant_id"] for r in await worker.read("revocations")}
        assert revoked == {"p-sess-a", "p-disabled"}
        signals = await worker.read("identity")
        assert len([s for s in signals if s["subject"]["id"] == "p-dis"]) == 1
        assert all(s["subject"]["id"] != "p-bad" for s in signals)
    finally:
        worker.stop()
        await transmitter.stop()
