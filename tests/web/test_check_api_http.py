"""The check API's HTTP plumbing, served in-process on a real socket: routes, Cerbos error bodies
and statuses, body limits, bearer tokens, TLS with client certificates, readiness."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streams.web.check_api import CheckApi, tls_context
from streams.web.tokens import ApiTokens, TokenFileError
from tests.secure_kafka import make_pki
from tests.web.helpers import checker, request, served, signal, state_bytes

TOKEN = "pep-token-0123456789"
PLAN_ONLY = "plan-token-0123456789"


async def _call(
    url: str,
    method: str = "POST",
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    ssl_ctx: Any = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=data, headers=headers, ssl=ssl_ctx) as resp,
    ):
        text = await resp.text()
        assert resp.content_type == "application/json", text
        return resp.status, json.loads(text)


def _api(**kwargs: Any) -> CheckApi:
    high = signal("user:alice", "risk-level-change", {"current_level": "HIGH"})
    live = kwargs.pop("live", None) or checker({b"user:alice": state_bytes(high)})
    return CheckApi(live, ready=kwargs.pop("ready", lambda: True), **kwargs)


async def test_check_whatever_the_content_type() -> None:
    async with served(_api()) as url:
        for ctype in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
            status, body = await _call(
                f"{url}/api/check/resources", body=request("alice"), headers={"Content-Type": ctype}
            )
            assert status == 200, body
            assert body["results"][0]["actions"] == {"read": "EFFECT_DENY"}
            assert len(body["cerbosCallId"]) == 26


async def test_errors_are_cerbos_shaped() -> None:
    async with served(_api(max_body_bytes=2048)) as url:
        check = f"{url}/api/check/resources"
        status, body = await _call(check, raw=b"not json")
        assert (status, body["code"]) == (400, 3) and body["message"].startswith("invalid JSON")
        for not_an_object in (b"[]", b'"{}"', b"3"):
            status, body = await _call(check, raw=not_an_object)
            assert (status, body) == (400, {"code": 3, "message": "request must be a JSON object"})
        status, body = await _call(check, raw=b"")
        assert (status, body["code"]) == (400, 3)
        assert body["message"] == (
            "validation errors:\n - principal: value is required\n - resources: value is required"
        )
        status, body = await _call(check, body={**request(), "foo": 1})
        assert (status, body["code"]) == (400, 3) and "foo" in body["message"]
        status, body = await _call(check, raw=b"{" + b" " * 4096 + b"}")
        assert (status, body["code"]) == (413, 8)
        assert await _call(check, "GET") == (501, {"code": 12, "message": "Method Not Allowed"})
        assert await _call(f"{url}/api/nothing", "GET") == (
            404,
            {"code": 5, "message": "Not Found"},
        )
        # the server keeps answering good requests after bad ones
        status, body = await _call(check, body=request("bob"))
        assert status == 200 and body["results"][0]["actions"] == {"read": "EFFECT_ALLOW"}


async def test_internal_error_has_no_traceback() -> None:
    def broken(key: bytes) -> bytes:
        raise RuntimeError("secret internals at /srv/vigil/x.py line 3")

    live = checker({})
    live._signals = broken
    async with served(_api(live=live)) as url:
        status, body = await _call(f"{url}/api/check/resources", body=request())
        assert (status, body) == (500, {"code": 13, "message": "internal error"})


async def test_health_server_info_and_readiness() -> None:
    ready = {"now": False}
    async with served(_api(ready=lambda: ready["now"])) as url:
        assert await _call(f"{url}/_cerbos/health", "GET") == (503, {"status": "NOT_SERVING"})
        status, body = await _call(f"{url}/api/check/resources", body=request())
        assert (status, body["code"]) == (503, 14)
        ready["now"] = True
        assert await _call(f"{url}/_cerbos/health", "GET") == (200, {"status": "SERVING"})
        svc = f"{url}/_cerbos/health?service=cerbos.svc.v1.CerbosService"
        assert await _call(svc, "GET") == (200, {"status": "SERVING"})
        assert await _call(f"{url}/_cerbos/health?service=x", "GET") == (
            404,
            {"code": 5, "message": "unknown service"},
        )
        status, body = await _call(f"{url}/api/server_info", "GET")
        assert status == 200 and body["version"]


def _token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    digest = hashlib.sha256(PLAN_ONLY.encode()).hexdigest()
    path.write_text(
        f"tokens:\n"
        f"  - name: pep\n    token: {TOKEN}\n"
        f"  - name: planner\n    sha256: {digest}\n    routes: [plan]\n"
    )
    return path


async def test_bearer_tokens(tmp_path: Path) -> None:
    tokens = ApiTokens.from_file(_token_file(tmp_path))
    async with served(_api(tokens=tokens)) as url:
        check = f"{url}/api/check/resources"
        status, body = await _call(check, body=request())
        assert (status, body["code"]) == (401, 16)
        status, body = await _call(check, body=request(), headers={"Authorization": "Bearer nope"})
        assert (status, body["code"]) == (401, 16)
        auth = {"Authorization": f"Bearer {PLAN_ONLY}"}
        status, body = await _call(check, body=request(), headers=auth)
        assert (status, body["code"]) == (403, 7)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, body = await _call(check, body=request(), headers=auth)
        assert status == 200, body
        status, body = await _call(f"{url}/api/server_info", "GET", headers=auth)
        assert status == 200
        status, _ = await _call(f"{url}/api/server_info", "GET")
        assert status == 401
        assert (await _call(f"{url}/_cerbos/health", "GET"))[0] == 200  # health needs no token


@pytest.mark.parametrize(
    "text",
    [
        "tokens: []\n",
        "tokens:\n  - name: a\n    token: short\n",
        "tokens:\n  - name: a\n    token: 0123456789abcdef0\n    routes: [admin]\n",
        "tokens:\n  - name: a\n    token: 0123456789abcdef0\n    extra: 1\n",
        "tokens:\n  - name: a\n    token: 0123456789abcdef0\n  - name: b\n    token: 0123456789abcdef0\n",
        "tokens:\n  - name: a\n",
    ],
)
def test_token_file_is_parsed_strictly(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(TokenFileError, match="t.yaml"):
        ApiTokens.from_file(path)


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = tls_context(pki.broker_cert, pki.broker_key, pki.ca)
    async with served(_api(), server) as url:
        client = ssl.create_default_context(cafile=str(pki.ca))
        client.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        status, body = await _call(f"{url}/api/check/resources", body=request(), ssl_ctx=client)
        assert status == 200, body
        anonymous = ssl.create_default_context(cafile=str(pki.ca))
        rogue = ssl.create_default_context(cafile=str(pki.ca))
        rogue.load_cert_chain(str(pki.rogue_client_cert), str(pki.rogue_client_key))
        for ctx in (anonymous, rogue):
            with pytest.raises(aiohttp.ClientError):
                await _call(f"{url}/api/check/resources", body=request(), ssl_ctx=ctx)
