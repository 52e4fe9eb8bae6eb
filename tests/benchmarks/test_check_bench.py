"""The check-API bench (``bench.check_api``, part (e) of ``make bench``) runs end to end on tiny
settings: a real worker and the stock Cerbos PDP answer the same requests identically, every
load phase gets answers, and the report renders. No timing thresholds: figures are not judged."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiohttp import web

from bench import check_api
from bench.http_load import Connection, encode_requests, summarize
from tests.external_tools import cerbos_binary

TINY = check_api.CheckPlan(
    subjects=40, requests=30, connections=2, warmup_s=0.2, seconds=0.5, signal_rate=100, rounds=1
)


async def test_check_bench_runs_end_to_end(broker: str, tmp_path: Path) -> None:
    cerbos_binary()  # skips (fails in CI) without the pinned PDP, before starting anything
    results: dict = {}
    prefix = f"t.checkbench.{uuid.uuid4().hex[:8]}."
    await check_api.run_check_api(broker, TINY, results, tmp_path, prefix=prefix)
    c = results["check_api"]
    assert c["answers"]["requests"] == TINY.requests
    assert c["answers"]["mismatches"] == 0, c["answers"]["examples"]
    assert set(c["answers"]["effects"]) == {"EFFECT_ALLOW", "EFFECT_DENY"}
    for phase in (
        "vigil_saturation",
        "cerbos_saturation",
        "vigil_latency",
        "cerbos_latency",
        "vigil_latency_signal_load",
    ):
        assert c[phase]["requests"] > 0, phase
        assert c[phase]["errors"] == 0, c[phase]
    assert c["vigil_latency_signal_load"]["signals_sent"] > 0
    text = "\n".join(check_api.markdown(results))
    assert "Vigil / Cerbos" in text and "0 differed" in text


async def test_load_client_reads_chunked_and_sized_bodies() -> None:
    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=await request.read())

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        body = await request.read()
        await resp.write(body[:3])
        await resp.write(body[3:])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/sized", sized)
    app.router.add_post("/chunked", chunked)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        conn = await Connection.open(url)
        for path in ("/sized", "/chunked", "/sized"):  # one keep-alive connection throughout
            [request] = encode_requests(url, [b'{"n": "' + path.encode() + b'"}'], path)
            assert await conn.send(request) == (200, b'{"n": "' + path.encode() + b'"}')
        conn.close()
    finally:
        await runner.cleanup()
    assert summarize([0.001, 0.002, 0.003])["p50_ms"] == 2.0
