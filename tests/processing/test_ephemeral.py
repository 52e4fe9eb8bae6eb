"""Ephemeral workloads without a broker: a workload's expired grant leaves no tombstone, its
released grant a tombstone only until ``expires_at``, and a grant state left with nothing in it
is deleted (None in ``changed_states``: a changelog tombstone); other principals keep their
tombstones (tests/processing/test_pipeline_time.py)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.processing.pipeline import Pipeline
from streams.state.store import MemoryStore
from tests.processing.support import NOW, Feed, grant, outputs, persist

SPIFFE = "spiffe://example.org/ns/prod/sa/job"
WORKLOAD = f"workload:{SPIFFE}"
GKEY = f"g:{WORKLOAD}".encode()


def workload_grant(gid: str, expires_at: int | None = NOW + 1000, **extra: Any) -> dict[str, Any]:
    body = grant(gid, principal={"id": SPIFFE, "type": "workload", "roles": ["employee"]})
    del body["device_id"], body["session_id"]
    return {**body, "issued_at": NOW, "expires_at": expires_at, **extra}


def test_an_expired_workload_grant_leaves_no_key(pipeline: Pipeline) -> None:
    store, feed = MemoryStore(), Feed()
    issued = pipeline.process([feed("authz.grants", workload_grant("w1"), WORKLOAD)], store, NOW)
    persist(store, issued)
    assert store.get(GKEY) is not None

    swept = pipeline.sweep([GKEY], store, NOW + 1000)
    [revocation] = outputs(swept, "authz.revocations")
    assert revocation["cause"]["kind"] == "expiry"
    assert swept.changed_states == {GKEY: None}  # deleted, through the changelog too
    persist(store, swept)
    assert store.get(GKEY) is None

    # A replayed issuance is refused as already expired, not made active again.
    replay = pipeline.process(
        [feed("authz.grants", workload_grant("w1"), WORKLOAD)], store, NOW + 2000
    )
    [dead] = outputs(replay, "signals.deadletter")
    assert dead["reason"] == "grant has already expired"
    assert not replay.changed_states


def test_a_released_workload_grant_keeps_its_tombstone_until_it_expires(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    persist(
        store, pipeline.process([feed("authz.grants", workload_grant("w1"), WORKLOAD)], store, NOW)
    )
    release = {"op": "released", "grant_id": "w1"}
    released = pipeline.process([feed("authz.grants", release, WORKLOAD)], store, NOW + 10)
    persist(store, released)
    state = orjson.loads(store.get(GKEY) or b"null")
    assert state["released"]["w1"][1] == NOW + 1000  # kept until expires_at, not for days
    before = pipeline.process(
        [feed("authz.grants", workload_grant("w1"), WORKLOAD)], store, NOW + 20
    )
    [dead] = outputs(before, "signals.deadletter")  # until it expires, the id stays released
    assert "was released" in dead["reason"]

    swept = pipeline.sweep([GKEY], store, NOW + 1000)
    assert swept.changed_states == {GKEY: None}


def test_a_workload_grant_without_expiry_and_a_user_grant_keep_their_tombstones(
    pipeline: Pipeline,
) -> None:
    store, feed = MemoryStore(), Feed()
    persist(
        store,
        pipeline.process(
            [
                feed("authz.grants", workload_grant("w1", expires_at=None), WORKLOAD),
                feed("authz.grants", grant("u1", expires_at=NOW + 1000)),
            ],
            store,
            NOW,
        ),
    )
    release = {"op": "released", "grant_id": "w1"}
    released = pipeline.process([feed("authz.grants", release, WORKLOAD)], store, NOW + 10)
    assert orjson.loads(released.changed_states[GKEY] or b"null")["released"]["w1"][1] > NOW + 10**8
    swept = pipeline.sweep([b"g:user:alice"], store, NOW + 1000)
    user_state = orjson.loads(swept.changed_states[b"g:user:alice"] or b"null")
    assert "u1" in user_state["revoked"]
