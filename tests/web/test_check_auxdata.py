"""``auxData.jwt`` through the check API over HTTP (in process, real socket): a worker's checker
configured with ``--aux-data-config`` answers checks and plans carrying tokens exactly as the
stock PDP configured with the same ``auxData`` block, counts refusals by reason, audits the
claims (not the token), and a bad configuration file stops ``vigil worker`` at start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from streams import metrics
from streams.app import PipelineService, build_pipeline
from streams.kafka.security import PLAINTEXT
from streams.policy import PolicyEngine
from streams.policy.auxdata import (
    UNVERIFIED,
    AuxDataConfigError,
    AuxDataRejected,
    AuxDataVerifier,
    _Keys,
    parse_go_duration,
)
from streams.processing.check import Limits, LiveChecker
from streams.settings import Settings
from streams.web.aux_keys import RemoteKeyRefresher
from streams.web.check_api import CheckApi
from streams.web.service import CheckApiService
from tests.external_tools import cerbos_binary
from tests.policy.test_differential import _server
from tests.policy_tools.helpers import post_check, strip_response
from tests.policy_tools.jwt_keys import (
    POLICY,
    JwksServer,
    check_request,
    claims,
    jwks,
    make_keys,
    plan_request,
    sign,
    write_config,
)
from tests.web.helpers import RISK, served

ROOT = Path(__file__).resolve().parents[2]


async def _post(url: str, body: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps(body), headers={"Content-Type": "text/plain"}) as resp,
    ):
        return resp.status, json.loads(await resp.text())


def _post_plan(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(f"{url}/api/plan/resources", data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _rejected(reason: str) -> float:
    return metrics.CHECK_AUX_DATA_REJECTED.labels(reason)._value.get()


async def test_check_api_verifies_tokens_like_stock_cerbos(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "doc.yaml").write_text(POLICY)
    keys = make_keys(tmp_path / "keys")
    aux = keys.aux_data()
    verifier = AuxDataVerifier.from_file(write_config(tmp_path / "aux.yaml", aux))
    engine = PolicyEngine.from_directory(policies)
    checker = LiveChecker(lambda: engine, RISK, {}.get, Limits(), verifier)
    bodies = {
        "valid": check_request(sign(keys.ec, claims()), "ec"),
        "not vip": check_request(sign(keys.ec, claims(groups=["staff"])), "ec"),
        "expired": check_request(sign(keys.ec, claims(exp=1_000_000)), "ec"),
        "wrong key": check_request(sign(keys.other, claims()), "ec"),
        "unknown key set": check_request(sign(keys.ec, claims()), "nope"),
        "no token": {**check_request(None), "auxData": {"jwt": {}}},
    }
    before = {r: _rejected(r) for r in ("expired", "signature", "key_set")}
    pdp = tmp_path / "pdp"
    pdp.mkdir()
    with _server(cerbos_binary(), policies, pdp, {}, aux_data=aux) as stock:
        async with served(CheckApi(checker, ready=lambda: True)) as url:
            for name, body in bodies.items():
                ours = await _post(f"{url}/api/check/resources", body)
                theirs = post_check(stock, body)
                assert ours[0] == theirs[0], (name, ours, theirs)
                if theirs[0] == 200:
                    assert strip_response(ours[1]) == strip_response(theirs[1]), name
                else:
                    assert ours[1]["code"] == theirs[1]["code"] == 3, name
                    assert ours[1]["message"].startswith(theirs[1]["message"]), name
            status, body = await _post(f"{url}/api/check/resources", bodies["valid"])
            assert body["results"][0]["actions"] == {"read": "EFFECT_ALLOW", "own": "EFFECT_ALLOW"}
            status, body = await _post(f"{url}/api/check/resources", bodies["expired"])
            assert (status, body["code"]) == (400, 3)
            assert body["message"].startswith('invalid auxData: "exp" not satisfied'), body
            # plans with a token: the claims are constants to the planner
            for name, ks_key in (("valid", keys.ec), ("wrong key", keys.other)):
                plan = plan_request(sign(ks_key, claims()), "ec")
                ours = await _post(f"{url}/api/plan/resources", plan)
                theirs = _post_plan(stock, plan)
                assert ours[0] == theirs[0], (name, ours, theirs)
                if theirs[0] == 200:
                    assert strip_response(ours[1]) == strip_response(theirs[1]), name
    assert _rejected("expired") == before["expired"] + 2
    assert _rejected("signature") == before["signature"] + 2
    assert _rejected("key_set") == before["key_set"] + 1
    # the audit record holds what the policy saw: the claims, never the token
    outcome = checker.check(bodies["valid"], "CALL")
    seen = outcome.decisions[0]["request"]["auxData"]["jwt"]
    assert seen["sub"] == "alice" and seen["aud"] == ["vigil"]
    assert bodies["valid"]["auxData"]["jwt"]["token"] not in json.dumps(outcome.decisions)


def _worker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--broker", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_bad_aux_data_config_stops_the_worker(tmp_path: Path) -> None:
    bad = tmp_path / "aux.yaml"
    bad.write_text(
        "auxData:\n  jwt:\n    keySets:\n      - id: a\n        local: {file: nope.jwks}\n"
    )
    for args, env in (
        (["--aux-data-config", str(bad)], None),
        ([], {"VIGIL_AUX_DATA_CONFIG": str(bad)}),
    ):
        proc = _worker(*args, "--data-dir", ":memory:", env=env)
        assert proc.returncode == 2, proc.stderr
        assert "--aux-data-config" in proc.stderr and "nope.jwks" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("auxData:\n  jwt:\n    keySet: []\n", "keySet"),
        ("jwt:\n  keySets: []\n", "auxData"),
        (
            "auxData:\n  jwt:\n    keySets:\n      - id: a\n        remote: {url: 'ftp://x/'}\n",
            "must be http(s)",
        ),
        (
            "auxData:\n  jwt:\n    keySets:\n      - id: a\n        remote: {url: 'http://x/'}\n"
            "        local: {file: a.jwks}\n",
            "exactly one of `local` or `remote`",
        ),
        (
            "auxData:\n  jwt:\n    keySets:\n      - id: a\n"
            "        remote: {url: 'http://x/', refreshInterval: 10ms}\n",
            "refreshInterval below",
        ),
        (
            "auxData:\n  jwt:\n    keySets:\n      - id: a\n        local: {file: a, data: b}\n",
            "exactly one of",
        ),
        ("auxData:\n  jwt:\n    keySets:\n      - id: a\n        local: {data: '%%%'}\n", "base64"),
        ("auxData:\n  jwt:\n    keySets:\n      - id: a\n        local: {data: e30=}\n", "parse"),
        ("auxData:\n  jwt:\n    acceptableTimeSkew: soon\n", "not a duration"),
        ("auxData:\n  jwt:\n    acceptableTimeSkew: -2s\n", "not a duration"),
        ("auxData:\n  jwt:\n    acceptableTimeSkew: 5\n", "with a unit"),
    ],
)
def test_bad_aux_data_config_is_refused_whole(tmp_path: Path, content: str, problem: str) -> None:
    bad = tmp_path / "aux.yaml"
    bad.write_text(content)
    with pytest.raises(AuxDataConfigError) as info:
        AuxDataVerifier.from_file(bad)
    assert problem in str(info.value) and str(bad) in str(info.value)


def test_durations_and_relative_key_files(tmp_path: Path) -> None:
    assert parse_go_duration("1m30s") == 90 and parse_go_duration("500ms") == 0.5
    assert parse_go_duration("0") == 0 and parse_go_duration("1h") == 3600
    keys = make_keys(tmp_path / "keys")
    keys.aux_data()  # writes the key files
    (tmp_path / "aux.yaml").write_text(
        "auxData:\n  jwt:\n    acceptableTimeSkew: 1m30s\n"
        "    keySets:\n      - id: a\n        local: {file: keys/ec.jwks}\n"
    )
    verifier = AuxDataVerifier.from_file(tmp_path / "aux.yaml")
    assert verifier.acceptable_time_skew == 90
    assert verifier.claims(sign(keys.ec, claims()), "")["sub"] == "alice"


def test_worker_checker_uses_the_configured_key_sets(tmp_path: Path) -> None:
    keys = make_keys(tmp_path / "keys")
    config = write_config(tmp_path / "aux.yaml", keys.aux_data())
    for aux_data_config, ids in ((None, []), (config, ["ec", "noalg", "noalg-insecure"])):
        settings = Settings(
            aux_data_config=aux_data_config,
            data_dir=Path(":memory:"),
            policies=ROOT / "policies",
        )
        service = PipelineService(settings, build_pipeline(settings), PLAINTEXT)
        assert isinstance(service.api, CheckApiService)
        assert set(ids) <= set(service.api.checker.aux_data.key_set_ids)
        assert bool(service.api.checker.aux_data.key_set_ids) == bool(ids)


async def test_python_sdk_sends_tokens(tmp_path: Path) -> None:
    """The Cerbos Python SDK, unchanged (``AuxData(jwt=JWT(...))``: it also sends
    ``"jwts": null`` and ``"keySetId": null``), against the check API."""
    from cerbos.sdk.client import CerbosClient
    from cerbos.sdk.model import JWT, AuxData, Principal, Resource, ResourceList

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "doc.yaml").write_text(POLICY)
    keys = make_keys(tmp_path / "keys")
    only_ec = {"jwt": {"keySets": keys.aux_data()["jwt"]["keySets"][:1]}}
    verifier = AuxDataVerifier.from_file(write_config(tmp_path / "aux.yaml", only_ec))
    engine = PolicyEngine.from_directory(policies)
    checker = LiveChecker(lambda: engine, RISK, {}.get, Limits(), verifier)
    alice, doc = Principal("alice", roles={"user"}), Resource("d1", "doc")

    def ask(url: str, token: str) -> Any:
        with CerbosClient(url, timeout_secs=5) as cerbos:
            return cerbos.check_resources(
                alice, ResourceList().add(doc, {"own"}), aux_data=AuxData(jwt=JWT(token))
            )

    async with served(CheckApi(checker, ready=lambda: True)) as url:
        resp = await asyncio.to_thread(ask, url, sign(keys.ec, claims()))
        assert resp.get_resource("d1").is_allowed("own")
        resp = await asyncio.to_thread(ask, url, sign(keys.ec, claims(groups=["staff"])))
        assert not resp.get_resource("d1").is_allowed("own")
        resp = await asyncio.to_thread(ask, url, sign(keys.other, claims()))
        assert resp.status_code == 400
        assert resp.status_msg.message.startswith("invalid auxData: ")


async def _until(condition: Callable[[], bool], what: str, deadline_s: float = 60.0) -> None:
    """Wait for a condition the worker reaches on its own (no timing is asserted)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        assert loop.time() < end, f"never happened: {what}"
        await asyncio.sleep(0.05)


async def test_remote_key_sets_are_fetched_and_refreshed(tmp_path: Path) -> None:
    """A worker's remote key set: refused until fetched, then used; a rotated JWKS replaces the
    keys at the next refresh; a failing fetch keeps the keys it had and is counted."""
    keys = make_keys(tmp_path / "keys")

    def accepts(key: Any) -> bool:
        try:
            verifier.claims(sign(key, claims()), "")
            return True
        except AuxDataRejected:
            return False

    with JwksServer(jwks(keys.ec)) as server:
        aux = {"jwt": {"keySets": [{"id": "idp", "remote": {"url": server.url}}]}}
        aux["jwt"]["keySets"][0]["remote"]["refreshInterval"] = "1s"
        verifier = AuxDataVerifier.from_file(write_config(tmp_path / "aux.yaml", aux))
        with pytest.raises(AuxDataRejected, match="not fetched yet"):
            verifier.claims(sign(keys.ec, claims()), "")
        refresher = RemoteKeyRefresher(verifier)
        await refresher.start()
        try:
            await _until(lambda: accepts(keys.ec), "the JWKS is fetched")
            server.body = jwks(keys.other)  # the IdP rotates its key
            await _until(lambda: accepts(keys.other), "the rotated JWKS is fetched")
            assert not accepts(keys.ec)
            errors = metrics.AUX_DATA_JWKS_FETCHES.labels("error")._value.get()
            server.status = 500
            await _until(
                lambda: metrics.AUX_DATA_JWKS_FETCHES.labels("error")._value.get() > errors,
                "a failed fetch is counted",
            )
            assert accepts(keys.other)  # the keys it had stay
        finally:
            await refresher.stop()
    # a worker with remote key sets runs the refresher with its check API
    settings = Settings(
        aux_data_config=tmp_path / "aux.yaml", data_dir=Path(":memory:"), policies=ROOT / "policies"
    )
    service = PipelineService(settings, build_pipeline(settings), PLAINTEXT)
    assert isinstance(service.api, CheckApiService)
    assert [r.id for r in service.api.aux_keys.remotes] == ["idp"]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_TIME = st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=25)
_CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "exp": _TIME,
        "nbf": _TIME,
        "iat": _TIME,
        "aud": _JSON,
        "sub": _JSON,
        "iss": _JSON,
        "jti": _JSON,
        "x": _JSON,
    },
)


def _part(value: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    token=st.text(max_size=40)
    | st.builds(
        lambda h, c, sig: f"{_part(h)}.{_part(c)}.{sig}",
        st.fixed_dictionaries(
            {"alg": st.sampled_from(["ES384", "none", "RS256", "x"])}, optional={"kid": _JSON}
        ),
        _CLAIMS,
        st.text(alphabet="abcXYZ-_", max_size=6),
    ),
    key_set=st.sampled_from(["", "ec", "nope"]),
)
def test_no_token_crashes_the_verifier(token: str, key_set: str) -> None:
    """Whatever the token: its claims, or `AuxDataRejected` (a 400), never another error."""
    for verifier in (FUZZ_VERIFIER, UNVERIFIED):
        with contextlib.suppress(AuxDataRejected):
            verifier.claims(token, key_set)


FUZZ_VERIFIER = AuxDataVerifier(
    {"ec": _Keys(keys=(ECKey.generate_key("P-256"),), require_kid=False, infer_alg=True)}
)
