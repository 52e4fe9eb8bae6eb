"""Vigil as a transmitter, end to end: a SET revokes two grants of a user; the worker sends each
configured receiver one signed CAEP session-revoked SET per revocation (retrying a receiver that
fails once, dead-lettering for one that refuses), publishes them on the outbound topic, and the
SETs verify with the JWKS its /.well-known/ssf-configuration points to."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from joserfc import jws
from joserfc.jwk import ECKey, KeySet

from streams.ssf.events import CAEP
from tests.kafka_helpers import consume_all, unique_name
from tests.pipeline.worker_harness import Worker
from tests.ssf.helpers import AUDIENCE, ISSUER, Signer, iss_sub, set_claims
from tests.ssf.test_ssf_push_worker import POLICY, grant, push_when_ready

SIGNER = Signer("tx")


class Receivers:
    """Two receivers: ``flaky`` answers 503 to its first push, then 202; ``refusing`` 400."""

    def __init__(self) -> None:
        self.flaky: list[bytes] = []
        self.flaky_calls = 0
        self.refused = 0
        self.auth: list[str | None] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/flaky", self._flaky)
        app.router.add_post("/refusing", self._refusing)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _flaky(self, request: web.Request) -> web.Response:
        self.flaky_calls += 1
        self.auth.append(request.headers.get("Authorization"))
        assert request.content_type == "application/secevent+jwt"
        if self.flaky_calls == 1:
            return web.Response(status=503)
        self.flaky.append(await request.read())
        return web.Response(status=202)

    async def _refusing(self, request: web.Request) -> web.Response:
        self.refused += 1
        return web.json_response({"err": "invalid_audience", "description": "no"}, status=400)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


async def test_revocations_become_signed_sets_that_verify(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    receivers = Receivers()
    await receivers.start()
    worker = start_worker()
    try:
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "document.yaml").write_text(POLICY)
        ours = ECKey.generate_key("P-256", parameters={"kid": "vigil-1"}, private=True)
        signing = tmp_path / "signing.json"
        signing.write_bytes(orjson.dumps({"keys": [ours.as_dict(private=True)]}))
        base = f"http://127.0.0.1:{receivers.port}"
        config = {
            "audience": AUDIENCE,
            "issuer": worker.api_url,
            "signing_keys": str(signing),
            "transmitters": [
                {
                    "name": "idp",
                    "issuer": ISSUER,
                    "jwks_uri": str(SIGNER.write_jwks(tmp_path / "jwks.json")),
                }
            ],
            "receivers": [
                {
                    "name": "flaky",
                    "endpoint": f"{base}/flaky",
                    "audience": "https://pep.example.com/",
                    "authorization": "Bearer rx",
                    "retry_initial_seconds": 0.1,
                },
                {
                    "name": "refusing",
                    "endpoint": f"{base}/refusing",
                    "audience": "https://other.example.com/",
                    "max_attempts": 3,
                    "retry_initial_seconds": 0.1,
                },
            ],
        }
        (tmp_path / "ssf.json").write_bytes(orjson.dumps(config))  # JSON is YAML
        outbound = unique_name("vigil.ssf-outbound")
        worker.policies = policies
        worker.extra_env.update(
            {
                "VIGIL_SSF_CONFIG": str(tmp_path / "ssf.json"),
                "VIGIL_TOPIC_SSF_RECEIVED": unique_name("vigil.ssf-received"),
                "VIGIL_TOPIC_SSF_OUTBOUND": outbound,
                "VIGIL_OUTPUT_FORMAT": "json",
            }
        )
        await worker.start()
        before = (int(time.time()) - 60) * 1000
        for g in (grant("tx-a", "tx-user", before, session="s1"), grant("tx-b", "tx-user", before)):
            await worker.produce_raw("grants", b"user:tx-user", orjson.dumps(g))
        await worker.wait_processed()
        token = SIGNER.sign(set_claims("account-disabled", {}, iss_sub("tx-user")))
        assert await push_when_ready(worker, token) == (202, None)

        deadline = time.monotonic() + 60
        while len(receivers.flaky) < 2 or receivers.refused < 2:
            assert time.monotonic() < deadline, (receivers.flaky, receivers.refused, worker.log())
            await asyncio.sleep(0.2)
        assert receivers.flaky_calls == 3  # one 503, retried, then both accepted
        assert set(receivers.auth) == {"Bearer rx"}
        assert receivers.refused == 2  # a refusal is not retried

        metadata = _get(f"{worker.api_url}/.well-known/ssf-configuration")
        assert metadata["issuer"] == worker.api_url and metadata["spec_version"] == "1_0"
        published = KeySet.import_key_set(_get(metadata["jwks_uri"]))
        claims_seen = []
        for raw in receivers.flaky:
            compact = jws.extract_compact(raw)
            header = compact.headers()
            assert header["typ"] == "secevent+jwt" and header["kid"] == "vigil-1"
            key = published.get_by_kid(header["kid"])
            verified = jws.deserialize_compact(raw, key, algorithms=[header["alg"]])
            claims_seen.append(orjson.loads(verified.payload))
        by_subject = {c["sub_id"]["format"]: c for c in claims_seen}
        assert set(by_subject) == {"complex", "jwt_id"}
        assert by_subject["complex"]["sub_id"]["session"] == {"format": "opaque", "id": "s1"}
        assert by_subject["complex"]["sub_id"]["user"]["sub"] == "tx-user"
        assert by_subject["jwt_id"]["sub_id"]["jti"] == "tx-b"
        for claims in claims_seen:
            assert claims["iss"] == worker.api_url and claims["aud"] == "https://pep.example.com/"
            assert "sub" not in claims and "exp" not in claims
            (event,) = claims["events"].items()
            assert event[0] == CAEP + "session-revoked"
            assert event[1]["initiating_entity"] == "policy"
            assert isinstance(event[1]["event_timestamp"], int)
            assert "Vigil revoked grant" in event[1]["reason_admin"]["en"]
        assert claims_seen[0]["jti"] != claims_seen[1]["jti"]
        assert claims_seen[0]["txn"] == claims_seen[1]["txn"]  # one cause, one txn

        published_sets = [
            orjson.loads(r.value) for r in await consume_all(worker.bootstrap, outbound)
        ]
        assert sorted(p["receiver"] for p in published_sets) == [
            "flaky",
            "flaky",
            "refusing",
            "refusing",
        ]
        dead = [d for d in await worker.read("deadletter") if d["error"] == "ssf-delivery"]
        assert len(dead) == 2 and all("refusing" in d["reason"] for d in dead)
    finally:
        worker.stop()
        await receivers.stop()
