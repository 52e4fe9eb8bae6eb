"""``check_free_form`` passes a value that is plainly within the limits without its full walk
(``_plainly_within``); that quick check must never pass what the walk refuses. Hypothesis
generates values at and beyond every limit: depth, entries, 64-bit integers, non-finite floats,
key and value types, text JSON cannot hold and encoded size."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.models import limits
from streams.models.limits import _plainly_within, _walk, check_free_form

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([limits.INT_MAX, limits.INT_MAX + 1, limits.INT_MIN, limits.INT_MIN - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=2),  # lone surrogates
    st.sampled_from([b"bytes", (1, 2), {1, 2}, "x" * 40_000, 1j]),
)
keys = st.one_of(st.text(max_size=4), st.sampled_from([1, None, (1,), "\ud800"]))
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=40,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def walk_refuses(value: Any) -> bool:
    try:
        _walk(value, "x")
    except ValueError:
        return True
    return False


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_the_quick_check_passes_nothing_the_walk_refuses(value: Any) -> None:
    if _plainly_within(value):
        assert not walk_refuses(value)


@pytest.mark.parametrize(
    "value",
    [
        nested(limits.MAX_DEPTH),
        nested(limits.MAX_DEPTH + 1),
        list(range(limits.MAX_ENTRIES)),
        list(range(limits.MAX_ENTRIES + 1)),
        [[0] * 500, [0] * 500, [0] * 23],
        [[0] * 500, [0] * 500, [0] * 22],
        {"a": [1.5, None, True, "x"], "b": {"c": [limits.INT_MIN, limits.INT_MAX]}},
        {"a": limits.INT_MAX + 1},
        {"a": float("nan")},
        {"a": "x" * limits.MAX_FREE_FORM_BYTES},
        {"a": "x" * (limits.MAX_FREE_FORM_BYTES - 8)},
        {"a": (1,)},
        {1: "a"},
        {"a": "\udc80"},
    ],
)
def test_both_agree_at_every_limit(value: Any) -> None:
    refused = walk_refuses(value)
    assert _plainly_within(value) is not refused
    if refused:
        with pytest.raises(ValueError):
            check_free_form(value)
    else:
        check_free_form(value)


def test_plain_objects_take_the_quick_check() -> None:
    snapshot = {
        "risk": {"level": "LOW", "score": 3.5, "factors": {}},
        "identity": {"account_status": "enabled", "credential_compromised": False},
        "network": {"zone": "corp", "asn": 64500, "anomalies": [], "ip": None},
    }
    assert _plainly_within(snapshot)
    assert _plainly_within({"department": "eng"})
    assert _plainly_within([])


class Text(str):
    pass


def test_keys_that_are_not_exactly_text_are_left_to_the_walk() -> None:
    for value in ({1: "a"}, {Text("a"): 1}, {"a": {None: 1}}):
        assert not _plainly_within(value)
        with pytest.raises(ValueError, match="object keys must be text"):
            check_free_form(value)
