"""``GET /api/revocations/stream`` over real feeds of a real revocations topic, served in-process.

Two feeds on one topic stand for two workers: a cursor one of them wrote resumes the stream on
the other without loss or duplicates, also when it is older than the worker's memory (read back
from Kafka). Filters, heartbeats, bounded buffers, the stream limit and tokens are checked on
the real socket.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streams import metrics
from streams.pep import SseRevocationListener
from streams.web.check_api import CheckApi
from streams.web.revocation_stream import RevocationStreams
from streams.web.revocations import (
    CursorError,
    RevocationFeed,
    RevocationFilter,
    format_cursor,
    parse_cursor,
)
from streams.web.tokens import ApiTokens
from tests.web.helpers import checker, served
from tests.web.revocation_helpers import produce, revocation, stream

TOKEN = "pep-token-0123456789"
CHECK_ONLY = "check-token-0123456789"


@asynccontextmanager
async def worker_api(
    broker: str, topic: str, *, history: int = 100, **options: Any
) -> AsyncIterator[tuple[RevocationFeed, str]]:
    """A feed on ``topic`` behind a served CheckApi (as `CheckApiService` wires them)."""
    tokens = options.pop("tokens", None)
    feed = RevocationFeed(bootstrap=broker, topic=topic, history=history)
    await feed.start()
    api = CheckApi(
        checker({}),
        ready=lambda: True,
        tokens=tokens,
        revocations=RevocationStreams(feed, **options),
    )
    try:
        async with served(api) as url:
            yield feed, url
            feed.close_streams()
    finally:
        await feed.stop()


async def _until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_cursor_round_trip_and_refusals() -> None:
    assert parse_cursor(format_cursor({1: 4, 0: 17})) == {0: 17, 1: 4}
    assert format_cursor({1: 4, 0: 17}) == "0:17,1:4"
    for bad in ("", "x", "0:1,0:2", "0:-1", "0=1", "0:1;1:2"):
        with pytest.raises(CursorError):
            parse_cursor(bad)


def test_filters() -> None:
    rev = revocation("w1/0", "user:alice", "S1")
    assert RevocationFilter().matches(rev)
    assert RevocationFilter.of(["alice"]).matches(rev)
    assert not RevocationFilter.of(["alice"], "agent").matches(rev)
    assert not RevocationFilter.of(["bob"]).matches(rev)
    assert RevocationFilter.of(session_ids=["S1", "S2"]).matches(rev)
    assert not RevocationFilter.of(["alice"], session_ids=["S2"]).matches(rev)
    # a watched check's grant id matches its per-resource grants, not another id's
    assert RevocationFilter.of(grant_ids=["w1"]).matches(rev)
    assert RevocationFilter.of(grant_ids=["w1/0"]).matches(rev)
    assert not RevocationFilter.of(grant_ids=["w"]).matches(rev)
    assert not RevocationFilter.of(grant_ids=["w1/1"]).matches(rev)


async def test_resume_on_another_worker_loses_nothing_and_repeats_nothing(
    broker: str, topic_factory: Any
) -> None:
    (topic,) = await topic_factory("authz.revocations", partitions=2)
    await produce(broker, topic, (0, revocation("old-0")), (1, revocation("old-1")))
    async with AsyncExitStack() as stack:
        _, url_a = await stack.enter_async_context(worker_api(broker, topic))
        _, url_b = await stack.enter_async_context(worker_api(broker, topic))
        # history=1: a cursor older than this worker's memory is read back from Kafka
        _, url_c = await stack.enter_async_context(worker_api(broker, topic, history=1))
        async with stream(url_a, params=[("principal", "alice")]) as sse:
            event, start, data = await sse.next_event()
            assert event == "ready" and data == {"cursor": start}
            assert parse_cursor(start) == {0: 1, 1: 1}  # from now: the old ones are not sent
            await produce(broker, topic, (0, revocation("g3")))
            [(first_id, first)] = await sse.revocations(1)
            assert first == revocation("g3")
            assert parse_cursor(first_id) == {0: 2, 1: 1}
        # while the client is away
        await produce(
            broker,
            topic,
            (1, revocation("g4", "user:bob")),
            (1, revocation("g5", "user:alice", "S1")),
            (0, revocation("g6")),
            (0, revocation("g7", "user:bob")),
        )
        async with stream(url_b, params=[("principal", "alice")], last_event_id=first_id) as sse:
            event, ready_id, _ = await sse.next_event()
            assert event == "ready" and ready_id == first_id
            got = await sse.revocations(2)
            assert sorted(r["grant_id"] for _, r in got) == ["g5", "g6"]
            with pytest.raises(TimeoutError):  # and nothing else (no g3 again, no bob)
                await sse.next_event(timeout=0.5)
        # unfiltered from the very first cursor, on the worker that holds one per partition
        for url in (url_b, url_c):
            async with stream(url, last_event_id=start) as sse:
                await sse.next_event()
                got = await sse.revocations(5)
                by_partition = {
                    p: [r["grant_id"] for _, r in got if r["grant_id"] in names]
                    for p, names in {0: {"g3", "g6", "g7"}, 1: {"g4", "g5"}}.items()
                }
                assert by_partition == {0: ["g3", "g6", "g7"], 1: ["g4", "g5"]}
                assert parse_cursor(got[-1][0]) == {0: 4, 1: 3}
                with pytest.raises(TimeoutError):
                    await sse.next_event(timeout=0.5)


async def test_a_cursor_ahead_of_this_worker_skips_what_the_client_has(
    broker: str, topic_factory: Any
) -> None:
    """A client coming from a worker further ahead: what this one reads late is not resent."""
    (topic,) = await topic_factory("authz.revocations", partitions=1)
    await produce(broker, topic, (0, revocation("seen-0")))
    async with worker_api(broker, topic) as (_, url), stream(url, last_event_id="0:3") as sse:
        assert (await sse.next_event())[1] == "0:3"
        await produce(broker, topic, *((0, revocation(f"g{i}")) for i in (1, 2, 3, 4)))
        got = await sse.revocations(2)
        assert [(eid, r["grant_id"]) for eid, r in got] == [("0:4", "g3"), ("0:5", "g4")]


async def test_session_and_grant_filters_on_the_wire(broker: str, topic_factory: Any) -> None:
    (topic,) = await topic_factory("authz.revocations", partitions=1)
    async with worker_api(broker, topic) as (_, url):
        params = [("session_id", "S1"), ("session_id", "S2"), ("grant_id", "w1")]
        async with stream(url, params=params) as sse:
            await sse.next_event()
            await produce(
                broker,
                topic,
                (0, revocation("w1/0", session_id="S3")),
                (0, revocation("w2", session_id="S1")),
                (0, revocation("w1/1", session_id="S2")),
            )
            [(_, got)] = await sse.revocations(1)
            assert got["grant_id"] == "w1/1"


async def test_heartbeats_while_idle(broker: str, topic_factory: Any) -> None:
    (topic,) = await topic_factory("authz.revocations", partitions=1)
    async with (
        worker_api(broker, topic, heartbeat_seconds=0.05) as (_, url),
        stream(url) as sse,
    ):
        await sse.next_event()
        with pytest.raises(TimeoutError):
            await sse.next_event(timeout=0.5)
        assert ": heartbeat" in sse.comments


async def test_a_slow_client_is_cut_off_and_never_blocks_the_feed(
    broker: str, topic_factory: Any
) -> None:
    (topic,) = await topic_factory("authz.revocations", partitions=1)
    feed = RevocationFeed(bootstrap=broker, topic=topic)
    await feed.start()
    try:
        aborted: list[str] = []
        slow, *_ = feed.subscribe(None, 2, lambda: aborted.append("slow"))
        fine, *_ = feed.subscribe(None, 10, lambda: aborted.append("fine"))
        before = metrics.REVOCATION_STREAM_SLOW._value.get()
        await produce(broker, topic, *((0, revocation(f"g{i}")) for i in range(3)))
        await _until(lambda: fine.queue.qsize() == 3)
        assert slow.dropped and aborted == ["slow"]
        assert metrics.REVOCATION_STREAM_SLOW._value.get() == before + 1
        assert not fine.dropped and feed.positions == {0: 3}
    finally:
        await feed.stop()


async def _status(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.json()


async def test_limit_tokens_and_bad_requests(
    broker: str, topic_factory: Any, tmp_path: Path
) -> None:
    (topic,) = await topic_factory("authz.revocations", partitions=1)
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n"
        f"  - {{name: pep, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}}}\n"
        f"  - {{name: checker, token: {CHECK_ONLY}, routes: [check]}}\n"
    )
    options = {"tokens": ApiTokens.from_file(path), "max_streams": 1}
    async with worker_api(broker, topic, **options) as (feed, url):
        endpoint = f"{url}/api/revocations/stream"
        assert (await _status(endpoint))[0] == 401
        status, body = await _status(endpoint, {"Authorization": f"Bearer {CHECK_ONLY}"})
        assert (status, body["code"]) == (403, 7)
        assert (await _status(f"{url}/_cerbos/health"))[0] == 200
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for query, headers in (
            ("?user=alice", auth),
            ("?principal=", auth),
            ("", {**auth, "Last-Event-ID": "not-a-cursor"}),
        ):
            status, body = await _status(endpoint + query, headers)
            assert (status, body["code"]) == (400, 3), (query, body)
        async with stream(url, token=TOKEN) as sse:
            await sse.next_event()
            rejected = metrics.REVOCATION_STREAM_REJECTED._value.get()
            status, body = await _status(endpoint, auth)
            assert (status, body["code"]) == (429, 8)
            assert metrics.REVOCATION_STREAM_REJECTED._value.get() == rejected + 1
        await _until(lambda: feed.streams == 0)
        async with stream(url, token=TOKEN) as sse:  # the slot is free again
            assert (await sse.next_event())[0] == "ready"


async def test_pep_listener_fails_over_to_the_next_worker_and_resumes(
    broker: str, topic_factory: Any
) -> None:
    (topic,) = await topic_factory("authz.revocations", partitions=2)
    got: list[str] = []
    async with (
        worker_api(broker, topic) as (feed_a, url_a),
        worker_api(broker, topic) as (_, url_b),
    ):
        listener = SseRevocationListener(
            [url_a, url_b], lambda r: got.append(r["grant_id"]), retry_seconds=0.05
        )
        task = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.connected.wait(), 10)
        await produce(broker, topic, (0, revocation("g1")), (1, revocation("g2")))
        await _until(lambda: len(got) == 2)
        feed_a.close_streams()  # worker A goes away (as when it stops)
        await produce(broker, topic, (1, revocation("g3")), (0, revocation("g4")))
        await _until(lambda: len(got) == 4 and listener.connections == 2)
        await asyncio.sleep(0.3)
        listener.stop()
        await task
    assert sorted(got[:2]) == ["g1", "g2"] and sorted(got[2:]) == ["g3", "g4"]
    assert parse_cursor(listener.last_event_id or "") == {0: 2, 1: 2}
