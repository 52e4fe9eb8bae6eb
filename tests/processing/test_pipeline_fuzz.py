"""Property-based fuzzing of ``Pipeline.process`` (hypothesis): generated batches of signals and
grants, valid and invalid (random JSON, wrong types, integers beyond 64 bits, NaN, deep nesting,
huge text, bad times, future times, random bytes, Avro garbage, wrong keys), against a real
RocksDB store and the real policies/ bundle.

Properties, for every batch: ``process`` never raises; every input record is accounted for
exactly once, either dead-lettered or applied (a signal's event id is in its subject's state, an
issued grant was decided or is a replay of a revoked one); every output and every state value
decodes; the input offsets advance past every record.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codecs import OutputEncoder, decode_any
from streams.models.grant import GrantEvent
from streams.processing.pipeline import Pipeline
from streams.processing.records import InRecord
from streams.state.store import RocksStore, grant_key, signal_key
from tests.processing.support import NOW, T0, TOPICS

USERS = ("alice", "bob", "carol")
SIGNAL_AVRO = OutputEncoder("Signal", "avro")
GRANT_AVRO = OutputEncoder("GrantEvent", "avro")


@pytest.fixture(scope="module")
def store() -> Iterator[RocksStore]:
    """One real RocksDB for the whole run: state left by one example is input to the next."""
    tmp = Path(tempfile.mkdtemp(prefix="vigil-fuzz-"))
    db = RocksStore(tmp / "db")
    yield db
    db.close()
    shutil.rmtree(tmp, ignore_errors=True)


# -- generators ---------------------------------------------------------------------------

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
odd_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            2**64,
            -(2**63) - 1,
            1e18,
            float("nan"),
            float("inf"),
            "x" * 70_000,
            [[[[[[[[[[1]]]]]]]]]],
            {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
            list(range(1500)),
        ]
    ),
)
past = st.integers(min_value=T0 - 10**9, max_value=NOW)
times = st.one_of(
    past,
    past,
    past,
    past.map(lambda ms: f"{ms // 1000}"),  # digit text: seconds, refused
    st.integers(min_value=NOW, max_value=NOW + 10**7),  # up to ~3 h ahead: within, beyond the skew
    st.sampled_from(
        [
            2**64,
            10**18,
            1e18,
            0,
            -1,
            999_999_999_999,
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00+00:00",
            "2026-11-29T10:30:00Z",
            "2026-11-29T10:30:00",
            "18446744073709551616",
            "soon",
        ]
    ),
)
ids = st.one_of(*[st.uuids().map(str)] * 4, st.sampled_from(["e1", "x" * 300, ""]))
attributes = {
    "risk-level-change": st.fixed_dictionaries(
        {"current_level": st.sampled_from(["LOW", "MEDIUM", "HIGH", "high"])},
        optional={"score": st.one_of(st.integers(0, 100), st.floats())},
    ),
    "device-compliance-change": st.fixed_dictionaries(
        {
            "device_id": st.sampled_from(["D1", "D2"]),
            "current_status": st.sampled_from(["compliant", "not-compliant"]),
        }
    ),
    "session-revoked": st.fixed_dictionaries({"session_id": st.sampled_from(["s1", "s2"])}),
    "account-disabled": st.fixed_dictionaries({}, optional={"reason": st.text(max_size=8)}),
    "network-context": st.fixed_dictionaries(
        {"ip": st.sampled_from(["10.0.0.1", "::1", "300.1.1.1"]), "zone": st.just("corp")},
        optional={"asn": st.integers(min_value=-1, max_value=2**65), "anomalies": json_values},
    ),
}
SIGNAL_TOPIC = {
    "risk-level-change": "signals.risk",
    "device-compliance-change": "signals.device",
    "session-revoked": "signals.identity",
    "account-disabled": "signals.identity",
    "network-context": "signals.identity",
}


@st.composite
def signals(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    kind = draw(st.sampled_from(sorted(attributes)))
    user = draw(st.sampled_from(USERS))
    body = {
        "event_id": draw(ids),
        "type": kind,
        "subject": {"type": "user", "id": user},
        "source": "fuzz",
        "event_time": draw(times),
        "attributes": draw(attributes[kind]),
    }
    return SIGNAL_TOPIC[kind], body, f"user:{user}"


@st.composite
def grants(draw: st.DrawFn) -> tuple[str, dict[str, Any], str]:
    user = draw(st.sampled_from(USERS))
    body: dict[str, Any] = {
        "op": draw(st.sampled_from(["issued", "issued", "released"])),
        "grant_id": draw(st.sampled_from(["g1", "g2", "g3"])),
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": "document", "id": "d1", "attr": {"owner": "x"}},
        "actions": draw(st.sampled_from([["read"], ["read", "write"]])),
        "session_id": "s1",
        "device_id": "D1",
        "issued_at": draw(times),
    }
    if draw(st.integers(0, 3)) == 0:
        body["expires_at"] = draw(times)
    return "authz.grants", body, f"user:{user}"


def _paths(body: dict[str, Any]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in body.items():
        out.append((key,))
        if isinstance(value, dict):
            out.extend((key, inner) for inner in value)
    return out


@st.composite
def corrupted(draw: st.DrawFn, base: st.SearchStrategy[tuple[str, dict[str, Any], str]]) -> Any:
    """A generated record, maybe with one field replaced by an odd value, or deleted."""
    topic, body, key = draw(base)
    how = draw(st.sampled_from(["keep", "keep", "keep", "keep", "replace", "delete"]))
    if how != "keep":
        path = draw(st.sampled_from(_paths(body)))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if how == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(odd_values)
    return topic, body, key


def _encode(kind: str, body: dict[str, Any], avro: bool) -> tuple[bytes, list[tuple[str, bytes]]]:
    if avro:
        encoder = SIGNAL_AVRO if kind == "signal" else GRANT_AVRO
        try:
            return encoder.encode(body), list(encoder.headers)
        except Exception:
            pass  # not representable in Avro: send it as JSON instead
    # stdlib json: writes integers beyond 64 bits, and NaN/Infinity (which orjson refuses)
    return json.dumps(body).encode(), [("content-type", b"application/json")]


@st.composite
def records(draw: st.DrawFn) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
    shape = draw(st.sampled_from(["signal"] * 4 + ["grant"] * 3 + ["bytes", "avro-garbage"]))
    if shape == "bytes":
        topic = draw(st.sampled_from(sorted(TOPICS.signals | {TOPICS.grants})))
        return (
            topic,
            draw(st.none() | st.binary(max_size=8)),
            draw(st.binary(min_size=1, max_size=64)),
            [],
        )
    kind = "grant" if shape == "grant" else "signal"
    if shape == "avro-garbage":
        kind = draw(st.sampled_from(["signal", "grant"]))
    topic, body, key = draw(corrupted(signals() if kind == "signal" else grants()))
    value, headers = _encode(kind, body, avro=draw(st.booleans()) or shape == "avro-garbage")
    if shape == "avro-garbage":
        cut = draw(st.integers(min_value=1, max_value=len(value)))
        flip = draw(st.integers(min_value=0, max_value=255))
        value = value[: cut - 1] + bytes([value[cut - 1] ^ flip]) + value[cut:]
        value = value[: draw(st.integers(min_value=1, max_value=len(value)))]
    raw_key: bytes | None = key.encode()
    which = draw(st.sampled_from(["right"] * 8 + ["wrong", "none"]))
    if which == "wrong":
        raw_key = b"user:mallory"
    elif which == "none":
        raw_key = None
    if draw(st.integers(0, 9)) == 0:  # a signal on the grants topic or the other way round
        topic = TOPICS.grants if topic != TOPICS.grants else "signals.risk"
    return topic, raw_key, value, headers


# -- the property -------------------------------------------------------------------------


OFFSETS = itertools.count(1)  # unique across examples: the store keeps state between them


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches=st.lists(st.lists(records(), min_size=1, max_size=12), min_size=1, max_size=2))
def test_no_input_stops_the_pipeline_and_every_record_is_accounted_for(
    pipeline: Pipeline, store: RocksStore, batches: list[list[Any]]
) -> None:
    for batch in batches:
        recs = []
        for topic, key, value, headers in batch:
            recs.append(InRecord(topic, 0, next(OFFSETS), key, value, headers, NOW))
        result = pipeline.process(recs, store, NOW)  # never raises
        store.write(result.changed_states)
        check_batch(pipeline, store, recs, result)


def check_batch(pipeline: Pipeline, store: RocksStore, recs: list[InRecord], result: Any) -> None:
    decoded = [(o.topic, decode_any(o.value, o.headers)[1]) for o in result.outputs]
    for value in result.changed_states.values():
        orjson.loads(value)
    dead: dict[tuple[str, int], int] = {}
    decided: set[tuple[str, str]] = set()
    for topic, out in decoded:
        if topic == TOPICS.deadletter:
            slot = (out["topic"], out["offset"])
            dead[slot] = dead.get(slot, 0) + 1
            assert out["reason"] and out["error"]
        elif topic == TOPICS.decisions:
            decided.add((out["subject"], out["grant_id"]))
    inputs = {(r.topic, r.offset) for r in recs}
    assert set(dead) <= inputs, "a dead letter for a record that was not in the batch"
    assert all(n == 1 for n in dead.values()), f"dead-lettered more than once: {dead}"
    for rec in recs:
        if (rec.topic, rec.offset) in dead:
            continue
        item = pipeline._decode(rec)  # not dead-lettered: it must be a valid record
        key = item.subject_key
        assert key is not None and (rec.key is None or rec.key == key.encode())
        if isinstance(item, GrantEvent):
            if item.op == "issued":
                raw = store.get(grant_key(key.encode()))
                revoked = orjson.loads(raw)["revoked"] if raw else {}
                assert (key, item.grant_id) in decided or item.grant_id in revoked, (
                    f"issued grant {item.grant_id} neither decided, refused nor a replay"
                )
        else:
            raw = store.get(signal_key(key.encode()))
            assert raw is not None and item.event_id in orjson.loads(raw)["recent"], (
                f"signal {item.event_id} neither applied nor dead-lettered"
            )
    for topic in {r.topic for r in recs}:
        assert result.next_offsets[topic] == max(r.offset for r in recs if r.topic == topic) + 1
