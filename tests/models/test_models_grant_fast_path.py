"""The hand-written grant-event fast path must agree with the pydantic models on every input: the
same fields (type for type, in the same order) when it accepts, and it never accepts what the
models refuse. Hypothesis mutates well-formed events with values at and beyond every limit."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.models.grant import _fast_fields, _model_fields, validate_grant_event
from streams.models.signal import SignalInvalid

T = 1795946400000
SPIFFE = "spiffe://example.org/ns/prod/sa/api"

BASE: list[dict[str, Any]] = [
    {  # make bench's grant (bench.events.grant)
        "op": "issued",
        "grant_id": "g-u0000001-1",
        "principal": {
            "id": "u0000001",
            "type": "user",
            "roles": ["employee"],
            "attr": {"department": "eng"},
        },
        "resource": {"kind": "document", "id": "doc-1", "attr": {"owner": "someone-else"}},
        "actions": ["read", "write"],
        "session_id": "s-1",
        "device_id": "D-1",
        "issued_at": T,
        "expires_at": T + 86_400_000,
        "on_behalf_of": [],
    },
    {  # the fewest fields, RFC 3339 time, reserved attributes to drop
        "op": "issued",
        "grant_id": "g1",
        "principal": {"id": "alice", "roles": ["a", "b"], "attr": {"signals": 1, "x": None}},
        "resource": {"kind": "k", "id": "1"},
        "actions": ["read"],
        "issued_at": "2026-11-29T10:00:00.5+01:00",
    },
    {  # delegated, with resource version and scope, nested attributes
        "op": "issued",
        "grant_id": "g2",
        "principal": {"id": "mail-bot", "type": "agent", "roles": ["agent"]},
        "resource": {
            "kind": "mailbox",
            "id": "m1",
            "attr": {"n": 1, "f": 2.5, "l": [1, "x", None, {"d": True}], "none": None},
            "policyVersion": "v2",
            "scope": "acme.eu",
        },
        "actions": ["read"],
        "issued_at": str(T),
        "expires_at": None,
        "on_behalf_of": ["user:bob", "workload:" + SPIFFE],
        "parent_grant_id": "g0",
    },
    {  # a workload
        "op": "issued",
        "grant_id": "w1",
        "principal": {"id": SPIFFE, "type": "workload", "roles": ["job"]},
        "resource": {"kind": "queue", "id": "q"},
        "actions": ["publish"],
        "issued_at": T,
        "expires_at": T + 60_000,
    },
    {  # every text and list at its limit
        "op": "issued",
        "grant_id": "g" * 256,
        "principal": {
            "id": "p" * 512,
            "type": "t" * 64,
            "roles": ["r" * 256] * 64,
            "attr": {},
        },
        "resource": {
            "kind": "k" * 256,
            "id": "i" * 512,
            "attr": {},
            "policyVersion": "v" * 256,
            "scope": "s" * 256,
        },
        "actions": ["a" * 256] * 64,
        "session_id": "s" * 256,
        "device_id": "d" * 256,
        "issued_at": T,
        "on_behalf_of": ["u:" + "x" * 254] * 64,
        "parent_grant_id": "p" * 256,
    },
    {"op": "released", "grant_id": "g1"},
    {
        "op": "released",
        "grant_id": "g1",
        "principal": {"id": "alice", "type": "user", "roles": ["r"]},
        "extra": "ignored",
    },
]

TOP = [
    "op",
    "grant_id",
    "principal",
    "resource",
    "actions",
    "session_id",
    "device_id",
    "issued_at",
    "expires_at",
    "on_behalf_of",
    "parent_grant_id",
    "unknown",
]
PRINCIPAL = ["id", "type", "roles", "attr", "unknown"]
RESOURCE = ["kind", "id", "attr", "policyVersion", "scope", "unknown"]

odd = st.one_of(
    st.sampled_from(
        [
            None,
            "",
            "x",
            "issued",
            "released",
            "user",
            "workload",
            SPIFFE,
            "spiffe://Example.org/x",
            "user:alice",
            "user:alice\n",
            "user:",
            ":alice",
            "-x:y",
            "a.b-c_d:ü",
            "x" * 64,
            "x" * 65,
            "x" * 256,
            "x" * 257,
            "x" * 512,
            "x" * 513,
            "ü" * 256,
            "ü" * 257,
            0,
            1,
            -1,
            True,
            False,
            1.5,
            5.0,
            float("nan"),
            float("inf"),
            2**63,
            2**70,
            T,
            float(T),
            T / 1000,
            str(T),
            "2026-11-29T10:00:00Z",
            "2026-11-29T10:00:00",
            "1970-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            " 1795946400000 ",
            [],
            [""],
            ["read"],
            ["read"] * 64,
            ["read"] * 65,
            ["x" * 257],
            ["user:bob"],
            ["user:bob"] * 65,
            ["bob"],
            [1],
            [None],
            ("read",),
            {},
            {"a": 1},
            {"a": None},
            {"a": [[[[[[[[1]]]]]]]]},
            {"a": float("nan")},
            {"a": 2**64},
            {"a": "x" * 70_000},
            {"id": "bob", "roles": ["r"]},
            {"kind": "k", "id": "i"},
        ]
    ),
    st.text(max_size=5),
    st.integers(),
    st.lists(st.text(max_size=3), max_size=3),
)


# values near each field's own rules, drawn as often as the general ones
NEAR: dict[str, list[Any]] = {
    "roles": [[], ["r"] * 65, ["r" * 257], ["r", 1]],
    "actions": [[], ["a"] * 65, ["a" * 257], [None]],
    "on_behalf_of": [
        ["user:alice\n"],
        ["user:"],
        [":alice"],
        ["-x:y"],
        ["user:bob", "bob"],
        ["u:" + "x" * 255],
        ["user:bob"] * 65,
    ],
    "type": ["", "-x", "a b", "x\n", "t" * 65, "workload"],
    "id": ["", "p" * 513, SPIFFE, "spiffe://x/a/../b"],
    "kind": ["", "k" * 257],
    "attr": [{"a": float("nan")}, {"a": 2**63}, {"a": -(2**63)}, [], {"signals": {}}],
    "issued_at": ["", 0, 999_999_999_999, "soon", T + 0.5, True],
    "expires_at": ["", T - 1, T, T + 1, "9999-12-31T00:00:00Z"],
    "grant_id": ["", "g" * 257],
    "session_id": ["", "s" * 257, 1],
    "parent_grant_id": ["", "p" * 257, 0],
    "policyVersion": ["", "v" * 257, 1],
}


def value_for(key: str) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(NEAR.get(key, [None])), odd)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """A base event with up to three fields (top-level or inside principal/resource) replaced by
    an odd value or deleted."""
    raw = copy.deepcopy(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["top", "principal", "resource"]))
        target = raw
        names = TOP
        if where != "top":
            if not isinstance(raw.get(where), dict):
                continue
            target, names = raw[where], PRINCIPAL if where == "principal" else RESOURCE
        key = draw(st.sampled_from(names))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(value_for(key))
    return raw


def by_models(raw: Any) -> str:
    try:
        return repr(_model_fields(raw))
    except SignalInvalid:
        return "invalid"


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_fast_path_agrees_with_the_models(raw: dict[str, Any]) -> None:
    fast = _fast_fields(copy.deepcopy(raw))
    if fast is not None:
        assert repr(fast) == by_models(raw)


def test_every_near_value_in_every_field_agrees() -> None:
    """Each base event with one field set to each value near its rules (or deleted)."""
    for base in BASE:
        for where, names in (("top", TOP), ("principal", PRINCIPAL), ("resource", RESOURCE)):
            if where != "top" and not isinstance(base.get(where), dict):
                continue
            for key in names:
                for value in [*NEAR.get(key, [None]), KeyError]:
                    raw = copy.deepcopy(base)
                    target = raw if where == "top" else raw[where]
                    if value is KeyError:
                        target.pop(key, None)
                    else:
                        target[key] = value
                    fast = _fast_fields(copy.deepcopy(raw))
                    if fast is not None:
                        assert repr(fast) == by_models(raw), raw


@pytest.mark.parametrize("raw", BASE)
def test_every_base_shape_takes_the_fast_path(raw: dict[str, Any]) -> None:
    fast = _fast_fields(copy.deepcopy(raw))
    assert fast is not None
    assert repr(fast) == by_models(raw) != "invalid"


@pytest.mark.parametrize("raw", [[1], "x", None, {"op": "issued"}])
def test_what_the_fast_path_leaves_gets_the_models_reason(raw: Any) -> None:
    assert _fast_fields(raw) is None
    with pytest.raises(SignalInvalid):
        validate_grant_event(raw)
