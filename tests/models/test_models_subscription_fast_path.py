"""The hand-written fast path for ``vigil.subscriptions`` records must agree with the pydantic
models on every input: the same event (type for type, a tuple where the model gives one) when it
accepts, and it never accepts what the models refuse. Hypothesis mutates well-formed records of
the four kinds with values at and beyond every limit."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.models.signal import SignalInvalid
from streams.models.subscription import (
    _fast_record,
    _validate_with_models,
    encode,
    validate_subscription,
)

SNAPSHOT = {
    "risk": {"level": "LOW", "score": 3.5},
    "identity": {"account_status": "enabled", "credential_compromised": False},
    "network": {"zone": "corp", "anomalies": []},
}
BASE: list[dict[str, Any]] = [
    {
        "op": "subscribe",
        "member": "device:D-u0000001",
        "home": "user:u0000001",
        "grant_id": "g-1",
        "parent_grant_id": None,
    },
    {
        "op": "subscribe",
        "member": "user:bob",
        "home": "agent:bot",
        "grant_id": "g",
        "parent_grant_id": "p",
    },
    {"op": "unsubscribe", "member": "user:bob", "home": "agent:bot", "grant_id": "g"},
    {
        "op": "state",
        "member": "device:D-u0000001",
        "home": "user:u0000001",
        "roles": [],
        "signals": SNAPSHOT,
        "cause": {"kind": "dependency", "event_id": "device:D-1@g-1", "event_time": 1795946400000},
        "device": None,
    },
    {
        "op": "state",
        "member": "device:D1",
        "home": "user:alice",
        "roles": ["employee"],
        "signals": {**SNAPSHOT, "extra": {"n": [1, None]}},
        "cause": {
            "kind": "signal",
            "event_id": "e1",
            "event_time": 1795946400000,
            "signal_type": "device-compliance-change",
            "arrival": 1795946400001,
        },
        "device": [1795946400000, "compliant"],
    },
    {
        "op": "cascade",
        "home": "agent:bot",
        "grant_id": "g2",
        "root_cause": "e1",
        "path": ["g1", "g2"],
        "event_time": 1795946400000,
    },
]
FIELDS = [
    "op",
    "member",
    "home",
    "grant_id",
    "parent_grant_id",
    "roles",
    "signals",
    "cause",
    "device",
    "root_cause",
    "path",
    "event_time",
    "unknown",
]
CAUSE = ["kind", "event_id", "event_time", "signal_type", "arrival", "unknown"]

odd = st.one_of(
    st.sampled_from(
        [
            None,
            "",
            "x",
            "subscribe",
            "unsubscribe",
            "state",
            "cascade",
            "signal",
            "dependency",
            "user:alice",
            "user:alice\n",
            "user:",
            ":alice",
            "-x:y",
            "a.b-c_d:ü",
            "x" * 256,
            "x" * 257,
            "user:" + "x" * 251,
            "user:" + "x" * 252,
            0,
            -1,
            True,
            1.5,
            5.0,
            "5",
            2**63,
            2**70,
            [],
            ["a"],
            ["a", "b"],
            ["a"] * 64,
            ["a"] * 65,
            ["x" * 257, "b"],
            [1, "compliant"],
            [1, "compliant", 2],
            [1.0, "compliant"],
            [True, "compliant"],
            ["1", "compliant"],
            [1, None],
            (1, "compliant"),
            {},
            SNAPSHOT,
            {**SNAPSHOT, "risk": None},
            {**SNAPSHOT, "x": float("nan")},
            {**SNAPSHOT, "x": [[[[[[[[1]]]]]]]]},
            {**SNAPSHOT, "x": 2**64},
            {"kind": "signal", "event_id": "e", "event_time": 1},
            {"kind": "dependency", "event_id": "e", "event_time": 1, "extra": 1},
        ]
    ),
    st.text(max_size=5),
    st.integers(),
)


# values near each field's own rules, drawn as often as the general ones
NEAR: dict[str, list[Any]] = {
    "member": ["user:alice\n", "user:", ":alice", "-x:y", "u:" + "x" * 254, "u:" + "x" * 255],
    "home": ["user:alice\n", "user:", "x", "u:" + "x" * 255],
    "grant_id": ["", "g" * 256, "g" * 257, 1],
    "parent_grant_id": ["", "p" * 257, 1],
    "roles": [[], ["r"] * 64, ["r"] * 65, ["r" * 257], [1]],
    "signals": [
        {},
        {**SNAPSHOT, "risk": None},
        {**SNAPSHOT, "network": []},
        {"risk": {}, "identity": {}},
        {**SNAPSHOT, "x": float("inf")},
        {**SNAPSHOT, "x": -(2**63) - 1},
    ],
    "device": [
        [1, "compliant", 2],
        [1],
        [],
        [1.0, "compliant"],
        [True, "compliant"],
        [1, "x" * 257],
        [1, 2],
        (1, "compliant"),
    ],
    "path": [[], ["a"], ["a"] * 65, ["a", "x" * 257], ["a", 1]],
    "root_cause": ["", "r" * 257],
    "event_time": [1.0, True, "1", None, 2**70],
    "kind": ["", "cascade", "SIGNAL"],
    "event_id": ["", "e" * 257, 1],
    "signal_type": [None, "s" * 257],
    "arrival": [None, 1.5, "1", False],
    "cause": [
        None,
        [],
        {"kind": "signal", "event_id": "e"},
        {"kind": "signal", "event_id": "e", "event_time": 1, "other": 1},
    ],
    "op": ["Subscribe", "state ", None],
}


def value_for(key: str) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(NEAR.get(key, [None])), odd)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A base record with up to three fields (top-level or in ``cause``) replaced by an odd value
    or deleted."""
    raw = copy.deepcopy(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(0, 3))):
        target, names = raw, FIELDS
        if draw(st.booleans()) and isinstance(raw.get("cause"), dict):
            target, names = raw["cause"], CAUSE
        key = draw(st.sampled_from(names))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(value_for(key))
    return raw


def by_models(data: Any) -> str:
    try:
        return repr(_validate_with_models(data))
    except SignalInvalid:
        return "invalid"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_fast_path_agrees_with_the_models(raw: dict[str, Any]) -> None:
    fast = _fast_record(copy.deepcopy(raw))
    if fast is not None:
        assert repr(fast) == by_models(raw)


def test_every_near_value_in_every_field_agrees() -> None:
    """Each base record with one field set to each value near its rules (or deleted)."""
    for base in BASE:
        for key, values in NEAR.items():
            targets = [(FIELDS, None)] + ([(CAUSE, "cause")] if "cause" in base else [])
            for names, inner in targets:
                if key not in names:
                    continue
                for value in [*values, KeyError]:
                    raw = copy.deepcopy(base)
                    target = raw[inner] if inner else raw
                    if value is KeyError:
                        target.pop(key, None)
                    else:
                        target[key] = value
                    fast = _fast_record(copy.deepcopy(raw))
                    if fast is not None:
                        assert repr(fast) == by_models(raw), raw


@pytest.mark.parametrize("raw", BASE)
def test_every_kind_takes_the_fast_path(raw: dict[str, Any]) -> None:
    fast = _fast_record(copy.deepcopy(raw))
    assert fast is not None
    assert repr(fast) == by_models(raw) != "invalid"
    assert validate_subscription(encode(raw)) == fast


def test_a_state_records_device_is_a_tuple_either_way() -> None:
    raw = BASE[4]
    assert validate_subscription(orjson.dumps(raw)).body["device"] == (1795946400000, "compliant")


@pytest.mark.parametrize("raw", [b"[1]", b'"x"', b"{}", b'{"op": "subscribe"}'])
def test_what_the_fast_path_leaves_gets_the_models_reason(raw: bytes) -> None:
    with pytest.raises(SignalInvalid):
        validate_subscription(raw)
