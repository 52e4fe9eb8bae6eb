"""The push endpoint and the poller in process, on the session's embedded broker (real ledger,
real signal writer): the answers the worker tests do not reach."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from streams import metrics
from streams.ssf.config import SsfConfig
from streams.ssf.follow import GrantLocator, JtiLedger
from streams.ssf.poll import Poller
from streams.ssf.push import PUSH_PATH, PushEndpoint
from streams.ssf.receiver import SetReceiver, SignalWriter
from streams.ssf.verify import MAX_SET_BYTES, SetVerifier
from tests.conftest import TopicFactory
from tests.kafka_helpers import consume_all
from tests.ssf.helpers import AUDIENCE, ISSUER, Signer, iss_sub, set_claims

SIGNER = Signer("http")
POLLED = "https://poll.example.com/"


class Rig:
    def __init__(self, receiver: SetReceiver, url: str, identity: str, bootstrap: str) -> None:
        self.receiver = receiver
        self.url = url
        self.identity = identity
        self.bootstrap = bootstrap
        self.ready = True

    async def post(
        self, body: bytes, *, method: str = "POST", ctype: str = "application/secevent+jwt"
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url, data=body, headers={"Content-Type": ctype}) as resp,
        ):
            raw = await resp.read()
            return resp.status, orjson.loads(raw) if raw else None


@pytest.fixture
async def rig(broker: str, topic_factory: TopicFactory, tmp_path: Path) -> AsyncIterator[Rig]:
    identity, risk, device, network, ledger_topic, changelog = await topic_factory(
        "signals.identity",
        "signals.risk",
        "signals.device",
        "signals.network",
        "vigil.ssf-received",
        "vigil.state-changelog",
        compacted=("vigil.ssf-received", "vigil.state-changelog"),
    )
    jwks = str(SIGNER.write_jwks(tmp_path / "jwks.json"))
    config = SsfConfig.model_validate(
        {
            "audience": AUDIENCE,
            "transmitters": [
                {"name": "idp", "issuer": ISSUER, "jwks_uri": jwks},
                {
                    "name": "polled",
                    "issuer": POLLED,
                    "jwks_uri": jwks,
                    "delivery": "poll",
                    "poll_endpoint": "http://127.0.0.1:1/poll",
                },
            ],
        }
    )
    ledger = JtiLedger(bootstrap=broker, topic=ledger_topic)
    locator = GrantLocator(bootstrap=broker, topic=changelog)
    writer = SignalWriter(
        bootstrap=broker,
        topics={"identity": identity, "risk": risk, "device": device, "network": network},
    )
    receiver = SetReceiver(SetVerifier(config), ledger, writer, locator)
    await writer.start()
    await ledger.start()
    await locator.start()
    holder: dict[str, Rig] = {}
    endpoint = PushEndpoint(receiver, lambda: holder["rig"].ready)
    app = web.Application()
    for path, (_, handler) in endpoint.routes().items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    holder["rig"] = Rig(receiver, f"http://127.0.0.1:{port}{PUSH_PATH}", identity, broker)
    try:
        yield holder["rig"]
    finally:
        await runner.cleanup()
        await ledger.stop()
        await locator.stop()
        await writer.stop()


def _count(outcome: str) -> float:
    return metrics.SSF_SETS.labels("push", outcome)._value.get()


async def test_push_answers(rig: Rig) -> None:
    token = SIGNER.sign(set_claims("account-disabled", {}, iss_sub("h-user")))
    assert await rig.post(token, method="PUT") == (405, None)
    polled = SIGNER.sign(set_claims("account-disabled", {}, iss_sub("h-user"), iss=POLLED))
    status, body = await rig.post(polled)
    assert status == 400 and body["err"] == "access_denied"
    status, body = await rig.post(b"x" * (MAX_SET_BYTES + 1))
    assert status == 400 and body["err"] == "invalid_request"
    rig.ready = False
    assert (await rig.post(token))[0] == 503
    rig.ready = True
    assert await rig.post(token) == (202, None)

    claims = set_claims(
        "https://schemas.openid.net/secevent/ssf/event-type/verification", {"state": "abc"}
    )
    del claims["sub_id"]  # about the stream, not a subject
    verification = SIGNER.sign(claims)
    assert await rig.post(verification) == (202, None)
    assert rig.receiver.stream_events["idp"] == {"verification": {"state": "abc"}}

    nobody = _count("no-subject")
    orphan = SIGNER.sign(
        set_claims("session-revoked", {}, {"format": "opaque", "id": "no-such-session"})
    )
    assert await rig.post(orphan) == (202, None)
    assert _count("no-subject") == nobody + 1

    records = await consume_all(rig.bootstrap, rig.identity)
    values = [orjson.loads(r.value) for r in records]
    assert [(v["type"], v["subject"]["id"]) for v in values] == [("account-disabled", "h-user")]
    assert records[0].key == b"user:h-user"


async def test_poller_reports_each_refusal_and_acks_only_written_sets(rig: Rig) -> None:
    transmitter = rig.receiver.verifier.config.transmitters[1]
    poller = Poller(transmitter, rig.receiver)
    good = set_claims("account-disabled", {}, iss_sub("p-user"), iss=POLLED)
    wrong_key = set_claims("account-disabled", {}, iss_sub("p-user"), iss=POLLED)
    other_issuer = set_claims("account-disabled", {}, iss_sub("p-user"))
    await poller.handle_sets(
        {
            good["jti"]: SIGNER.sign(good).decode(),
            "not-its-jti": SIGNER.sign(wrong_key).decode(),
            other_issuer["jti"]: SIGNER.sign(other_issuer).decode(),
            "not-a-string": 7,
        }
    )
    assert poller.acks == [good["jti"]]
    assert {k: v["err"] for k, v in poller.errors.items()} == {
        "not-its-jti": "invalid_request",
        other_issuer["jti"]: "invalid_issuer",
        "not-a-string": "invalid_request",
    }
    body = poller.request_body()
    assert body["ack"] == [good["jti"]] and set(body["setErrs"]) == set(poller.errors)
    assert body["returnImmediately"] is False and body["maxEvents"] == 100
