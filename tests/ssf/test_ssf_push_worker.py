"""Push delivery end to end: signed SETs of every mapped type, POSTed to a real worker's
``/ssf/push`` on the embedded broker, revoke exactly the grants they should; bad SETs get their
RFC 8935 code and change nothing; redelivery (also after a restart) has one effect; a reused
jti with another payload is refused and counted.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.kafka_helpers import unique_name
from tests.pipeline.worker_harness import Worker
from tests.ssf.helpers import Signer, complex_, config_yaml, iss_sub, jwt_id, opaque, set_claims

POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: document
  version: default
  rules:
    - name: read-while-everything-holds
      actions: ["read"]
      roles: ["employee"]
      effect: EFFECT_ALLOW
      condition:
        match:
          all:
            of:
              - expr: P.attr.signals.identity.account_status == "enabled"
              - expr: P.attr.signals.identity.credential_compromised == false
              - expr: P.attr.signals.identity.credential_change_required == false
              - expr: P.attr.signals.identity.identifier_status != "recycled"
              - expr: P.attr.signals.identity.assurance_level != "nist-aal1"
              - expr: P.attr.signals.session.revoked == false
              - expr: P.attr.signals.device.status != "not-compliant"
              - expr: P.attr.signals.risk.level != "HIGH"
              - expr: >-
                  P.attr.signals.identity.credential_changed_at == ""
                  || timestamp(P.attr.grant.issued_at)
                     > timestamp(P.attr.signals.identity.credential_changed_at)
              - expr: >-
                  !has(P.attr.signals.token.claims.role)
                  || P.attr.signals.token.claims.role != "ro-admin"
"""
SIGNER = Signer()
TOKEN = "Bearer push-secret"


def grant(
    gid: str, user: str, issued_at_ms: int, session: str | None = None, device: str | None = None
) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": f"doc-{gid}", "attr": {}},
        "actions": ["read"],
        "session_id": session,
        "device_id": device,
        "issued_at": issued_at_ms,
        "expires_at": "2099-01-01T00:00:00Z",
    }


def push(
    worker: Worker,
    token: bytes,
    *,
    auth: str | None = TOKEN,
    ctype: str = "application/secevent+jwt",
) -> tuple[int, dict[str, Any] | None]:
    headers = {"Content-Type": ctype}
    if auth is not None:
        headers["Authorization"] = auth
    req = urllib.request.Request(f"{worker.api_url}/ssf/push", data=token, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            return resp.status, orjson.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, orjson.loads(body) if body else None


async def push_when_ready(worker: Worker, token: bytes) -> tuple[int, dict[str, Any] | None]:
    """As a transmitter does: retry while the worker answers 503 (still starting)."""
    deadline = time.monotonic() + 30
    while True:
        answer = push(worker, token)
        if answer[0] != 503 or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


def ssf_worker(start_worker: Callable[..., Worker], tmp_path: Path) -> Worker:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "document.yaml").write_text(POLICY)
    config = tmp_path / "ssf.yaml"
    jwks = SIGNER.write_jwks(tmp_path / "jwks.json")
    config.write_text(config_yaml(str(jwks), push_authorization="Bearer ${IDP_PUSH_TOKEN}"))
    worker = start_worker()
    worker.policies = policies
    worker.extra_env.update(
        {
            "VIGIL_SSF_CONFIG": str(config),
            "IDP_PUSH_TOKEN": "push-secret",
            "VIGIL_TOPIC_SSF_RECEIVED": unique_name("vigil.ssf-received"),
            "VIGIL_OUTPUT_FORMAT": "json",
        }
    )
    return worker


async def test_every_mapped_type_revokes_what_it_should(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    worker = ssf_worker(start_worker, tmp_path)
    await worker.start()
    now_s = int(time.time())
    before, after = (now_s - 60) * 1000, (now_s - 10) * 1000
    change_at = now_s - 30  # event_timestamp between the two issuances

    grants = [
        grant("sess-a", "u-sess", before, session="s1"),
        grant("sess-b", "u-sess", before, session="s2"),
        grant("opq-a", "u-opq", before, session="sx-opaque"),
        grant("opq-b", "u-opq", before, session="sy"),
        grant("tok-a", "u-tok", before, session="t1"),
        grant("tok-b", "u-tok", before, session="t1"),
        grant("all-old", "u-all", before, session="a1"),
        grant("all-new", "u-all", after, session="a2"),
        grant("claims-a", "u-claims", before),
        grant("claims-b", "u-claims", before),
        grant("cred-old", "u-cred", before),
        grant("cred-new", "u-cred", after),
        grant("aal", "u-aal", before),
        grant("dev-a", "u-dev", before, device="d1"),
        grant("dev-b", "u-dev", before, device="d2"),
        grant("est", "u-est", before, session="e1"),
        grant("pres", "u-pres", before, session="p1"),
        grant("risk", "u-risk", before),
        grant("disabled", "u-disabled", before),
        grant("enabled", "u-enabled", before),
        grant("purged", "u-purged", before),
        grant("compromise", "u-compromise", before),
        grant("change-req", "u-change-req", before),
        grant("id-changed", "u-id-changed", before),
        grant("id-recycled", "u-id-recycled", before),
        grant("order", "u-order", before),
        grant("bad", "u-bad", before),
    ]
    for g in grants:
        await worker.produce_raw("grants", f"user:{g['principal']['id']}".encode(), orjson.dumps(g))
    await worker.wait_processed()
    assert await worker.read("revocations") == []

    def ts(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"event_timestamp": change_at, **(extra or {})}

    good = [
        ("session-revoked", ts(), complex_(user=iss_sub("u-sess"), session=opaque("s1"))),
        ("session-revoked", ts(), opaque("sx-opaque")),
        ("session-revoked", ts(), jwt_id("tok-a")),
        ("sessions-revoked", ts(), iss_sub("u-all")),
        ("token-claims-change", ts({"claims": {"role": "ro-admin"}}), jwt_id("claims-a")),
        (
            "credential-change",
            ts({"credential_type": "password", "change_type": "update"}),
            iss_sub("u-cred"),
        ),
        (
            "assurance-level-change",
            ts({"namespace": "NIST-AAL", "current_level": "nist-aal1"}),
            iss_sub("u-aal"),
        ),
        (
            "device-compliance-change",
            ts({"current_status": "not-compliant", "previous_status": "compliant"}),
            complex_(user=iss_sub("u-dev"), device=opaque("d1")),
        ),
        (
            "session-established",
            ts({"acr": "AAL2", "amr": ["otp"]}),
            complex_(user=iss_sub("u-est"), session=opaque("e1")),
        ),
        (
            "session-presented",
            ts({"fp_ua": "abc"}),
            complex_(user=iss_sub("u-pres"), session=opaque("p1")),
        ),
        (
            "risk-level-change",
            ts({"principal": "USER", "current_level": "HIGH"}),
            iss_sub("u-risk"),
        ),
        ("account-disabled", ts({"reason": "hijacking"}), iss_sub("u-disabled")),
        ("account-enabled", ts(), iss_sub("u-enabled")),
        ("account-purged", ts(), iss_sub("u-purged")),
        ("credential-compromise", ts({"credential_type": "password"}), iss_sub("u-compromise")),
        ("account-credential-change-required", ts(), iss_sub("u-change-req")),
        ("identifier-changed", ts({"new-value": "u2@example.com"}), iss_sub("u-id-changed")),
        ("identifier-recycled", ts(), iss_sub("u-id-recycled")),
        # out of order: the newer LOW arrives first; the older HIGH changes nothing
        (
            "risk-level-change",
            {"event_timestamp": change_at + 5, "principal": "USER", "current_level": "LOW"},
            iss_sub("u-order"),
        ),
        (
            "risk-level-change",
            {"event_timestamp": change_at, "principal": "USER", "current_level": "HIGH"},
            iss_sub("u-order"),
        ),
    ]
    tokens = []
    for event, payload, sub in good:
        token = SIGNER.sign(
            set_claims(event, payload, sub), alg="RS256" if len(tokens) % 2 else "ES256"
        )
        tokens.append(token)
        assert await push_when_ready(worker, token) == (202, None), event

    bad_claims = set_claims("account-disabled", ts(), iss_sub("u-bad"))
    other = Signer("other")
    bad = [
        (SIGNER.sign(bad_claims), None, "authentication_failed"),
        (SIGNER.sign(bad_claims), "Bearer wrong", "authentication_failed"),
        (other.sign(bad_claims), TOKEN, "invalid_key"),
        (SIGNER.sign(dict(bad_claims, iss="https://evil.example.com/")), TOKEN, "invalid_issuer"),
        (
            SIGNER.sign(dict(bad_claims, aud="https://other.example.com/")),
            TOKEN,
            "invalid_audience",
        ),
        (SIGNER.sign(dict(bad_claims, sub="u-bad")), TOKEN, "invalid_request"),
        (SIGNER.sign(bad_claims, header={"typ": "JWT"}), TOKEN, "invalid_request"),
        (b"garbage", TOKEN, "invalid_request"),
    ]
    for token, auth, err in bad:
        status, body = push(worker, token, auth=auth)
        assert status == 400 and body is not None and body["err"] == err, (err, body)
        assert set(body) == {"err", "description"}
    status, body = push(worker, SIGNER.sign(bad_claims), ctype="application/json")
    assert status == 400 and body and body["err"] == "invalid_request"

    # redelivery: same answer, no second signal; same jti with another payload: refused, alerted
    assert push(worker, tokens[11]) == (202, None)
    conflict = set_claims("account-enabled", ts(), iss_sub("u-disabled"))
    conflict["jti"] = orjson.loads(_payload(tokens[11]))["jti"]
    status, body = push(worker, SIGNER.sign(conflict))
    assert (
        status == 400
        and body
        and body["err"] == "invalid_request"
        and "different payload" in body["description"]
    )
    assert worker.metric("vigil_ssf_jti_conflicts_total") == 1

    await worker.wait_processed()
    revoked = {r["grant_id"] for r in await worker.read("revocations")}
    assert revoked == {
        "sess-a",
        "opq-a",
        "tok-a",
        "all-old",
        "claims-a",
        "cred-old",
        "aal",
        "dev-a",
        "risk",
        "disabled",
        "purged",
        "compromise",
        "change-req",
        "id-recycled",
    }
    signals = await worker.read("identity")
    disabled = [s for s in signals if s["subject"]["id"] == "u-disabled"]
    assert len(disabled) == 1  # the redelivery wrote nothing
    assert disabled[0]["source"] == "ssf:idp"
    assert all(s["subject"]["id"] != "u-bad" for s in signals)
    assert worker.metric("vigil_ssf_sets_total") >= len(good) + len(bad)

    # the ledger survives a restart: a redelivery to the new worker is still a duplicate
    worker.stop()
    replacement = start_worker(like=worker)
    await replacement.start()
    assert await push_when_ready(replacement, tokens[11]) == (202, None)
    assert push(replacement, SIGNER.sign(conflict))[0] == 400
    await replacement.wait_processed()
    signals = await replacement.read("identity")
    assert len([s for s in signals if s["subject"]["id"] == "u-disabled"]) == 1


def _payload(token: bytes) -> bytes:
    import base64

    part = token.split(b".")[1]
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
