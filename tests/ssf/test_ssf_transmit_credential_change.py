"""Vigil as a transmitter, credential-change: a CAEP credential-change SET revokes two grants of
a user; each receiver gets the two session-revoked SETs and exactly one credential-change SET
for the cause (same ``txn``), all verifying with the JWKS Vigil publishes. Plus the rules of
``credential_change_claims`` on records (no broker)."""

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

from streams.ssf.config import Receiver
from streams.ssf.events import CAEP
from streams.ssf.transmit import credential_change_claims, revocation_claims
from tests.kafka_helpers import consume_all, unique_name
from tests.pipeline.worker_harness import Worker
from tests.ssf.helpers import AUDIENCE, ISSUER, Signer, iss_sub, set_claims
from tests.ssf.test_ssf_push_worker import POLICY, grant, push_when_ready

SIGNER = Signer("cc")
CREDENTIAL_CHANGE = CAEP + "credential-change"
SESSION_REVOKED = CAEP + "session-revoked"


class Receivers:
    """Receivers ``a`` and ``b``: accept every SET and keep it."""

    def __init__(self) -> None:
        self.got: dict[str, list[bytes]] = {"a": [], "b": []}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{name}", self._accept)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _accept(self, request: web.Request) -> web.Response:
        self.got[request.match_info["name"]].append(await request.read())
        return web.Response(status=202)


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def _event_names(claims: list[dict[str, Any]]) -> list[str]:
    return sorted(next(iter(c["events"])) for c in claims)


async def test_credential_change_cause_gives_one_credential_change_set_per_receiver(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    receivers = Receivers()
    await receivers.start()
    worker = start_worker()
    try:
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "document.yaml").write_text(POLICY)
        ours = ECKey.generate_key("P-256", parameters={"kid": "vigil-cc"}, private=True)
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
                {"name": n, "endpoint": f"{base}/{n}", "audience": f"https://{n}.example.com/"}
                for n in ("a", "b")
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
            }
        )
        await worker.start()
        before = (int(time.time()) - 60) * 1000
        for g in (grant("cc-a", "cc-user", before, session="s1"), grant("cc-b", "cc-user", before)):
            await worker.produce_raw("grants", b"user:cc-user", orjson.dumps(g))
        await worker.wait_processed()
        change = {"credential_type": "password", "change_type": "update"}
        token = SIGNER.sign(
            set_claims(
                "credential-change",
                {**change, "event_timestamp": int(time.time()) - 5},
                iss_sub("cc-user"),
            )
        )
        assert await push_when_ready(worker, token) == (202, None)

        def session_revoked(name: str) -> int:
            return sum(b"session-revoked" in _payload(raw) for raw in receivers.got[name])

        deadline = time.monotonic() + 60
        while session_revoked("a") < 2 or session_revoked("b") < 2:
            assert time.monotonic() < deadline, (receivers.got, worker.log())
            await asyncio.sleep(0.2)
        # Each revocation's SETs are published before they are pushed: the outbound topic now
        # holds every SET both revocations gave.
        published = [orjson.loads(r.value) for r in await consume_all(worker.bootstrap, outbound)]
        assert sorted((p["receiver"], p["event"]) for p in published) == [
            ("a", "credential-change"),
            ("a", "session-revoked"),
            ("a", "session-revoked"),
            ("b", "credential-change"),
            ("b", "session-revoked"),
            ("b", "session-revoked"),
        ]
        deadline = time.monotonic() + 30
        while len(receivers.got["a"]) < 3 or len(receivers.got["b"]) < 3:
            assert time.monotonic() < deadline, (receivers.got, worker.log())
            await asyncio.sleep(0.2)

        metadata = _get(f"{worker.api_url}/.well-known/ssf-configuration")
        published_keys = KeySet.import_key_set(_get(metadata["jwks_uri"]))
        jtis = set()
        for name in ("a", "b"):
            claims_seen = []
            for raw in receivers.got[name]:
                header = jws.extract_compact(raw).headers()
                assert header["typ"] == "secevent+jwt" and header["kid"] == "vigil-cc"
                key = published_keys.get_by_kid(header["kid"])
                verified = jws.deserialize_compact(raw, key, algorithms=[header["alg"]])
                claims_seen.append(orjson.loads(verified.payload))
            assert _event_names(claims_seen) == [
                CREDENTIAL_CHANGE,
                SESSION_REVOKED,
                SESSION_REVOKED,
            ]
            assert len({c["txn"] for c in claims_seen}) == 1  # one cause, one txn
            (cc,) = [c for c in claims_seen if CREDENTIAL_CHANGE in c["events"]]
            assert cc["iss"] == worker.api_url and cc["aud"] == f"https://{name}.example.com/"
            assert cc["sub_id"] == {"format": "iss_sub", "iss": worker.api_url, "sub": "cc-user"}
            event = cc["events"][CREDENTIAL_CHANGE]
            assert {k: event[k] for k in change} == change
            assert event["initiating_entity"] == "policy"
            assert isinstance(event["event_timestamp"], int)
            assert "credential change" in event["reason_admin"]["en"]
            jtis.update(c["jti"] for c in claims_seen)
        assert len(jtis) == 6  # unique per SET and receiver
    finally:
        worker.stop()
        await receivers.stop()


def _payload(raw: bytes) -> bytes:
    return jws.extract_compact(raw).payload


RECEIVER = Receiver(name="pep", endpoint="https://pep.example.com/ssf", audience="https://pep/")


def _revocation(**cause: Any) -> dict[str, Any]:
    return {
        "revocation_id": "r-1",
        "grant_id": "g-1",
        "subject": "user:alice",
        "session_id": None,
        "cause": {"kind": "signal", "event_id": "e-1", **cause},
        "revoked_at": 1_795_946_400_123,
        "cause_event_time": 1_795_946_399_000,
    }


def test_credential_change_claims_only_for_a_complete_credential_change_cause() -> None:
    full = {"signal_type": "credential-change", "credential_type": "x509", "change_type": "revoke"}
    claims = credential_change_claims(_revocation(**full), RECEIVER, "https://vigil/")
    assert claims is not None
    assert claims["events"][CREDENTIAL_CHANGE]["event_timestamp"] == 1_795_946_399
    assert (
        claims["txn"] == revocation_claims(_revocation(**full), RECEIVER, "https://vigil/")["txn"]
    )
    # another revocation of the same cause, revoked later (after a restart): the same SET,
    # so a receiver drops the repeat as a duplicate
    other = {
        **_revocation(**full),
        "revocation_id": "r-2",
        "grant_id": "g-2",
        "revoked_at": 1_795_946_500_000,
    }
    assert credential_change_claims(other, RECEIVER, "https://vigil/") == claims
    assert credential_change_claims(_revocation(), RECEIVER, "https://vigil/") is None
    assert (
        credential_change_claims(
            _revocation(signal_type="device-compliance-change"), RECEIVER, "https://vigil/"
        )
        is None
    )
    # CAEP requires both attributes: without one, no credential-change SET
    partial = {**full, "change_type": None}
    assert credential_change_claims(_revocation(**partial), RECEIVER, "https://vigil/") is None
