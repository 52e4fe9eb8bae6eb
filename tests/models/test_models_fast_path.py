"""The hand-written signal fast path must agree with the pydantic models on every input: same
``Signal`` when it accepts, and it must never accept what the models reject."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from streams.models.signal import SignalInvalid, _fast_signal, _validate_with_models

BASE: list[dict[str, Any]] = [
    {
        "type": "device-compliance-change",
        "attributes": {
            "device_id": "D1",
            "current_status": "compliant",
            "previous_status": "not-compliant",
        },
    },
    {
        "type": "risk-level-change",
        "attributes": {"current_level": "high", "previous_level": "LOW", "score": 42},
    },
    {
        "type": "network-context",
        "attributes": {
            "ip": "2001:db8::1",
            "zone": "vpn",
            "country": "NL",
            "asn": 1136,
            "anomalies": ["tor"],
        },
    },
    {"type": "network-context", "attributes": {"ip": "10.1.2.3", "zone": "corp"}},
    {"type": "credential-change", "attributes": {"credential_type": "password"}},
    {
        "type": "assurance-level-change",
        "attributes": {"current_level": "aal2", "previous_level": None},
    },
    {"type": "account-disabled", "attributes": {"reason": "hr"}},
    {"type": "account-enabled", "attributes": {}},
    {"type": "credential-compromise", "attributes": {}},
    {"type": "session-revoked", "attributes": {"session_id": "s1"}},
]
ODD_VALUES: list[Any] = [
    None,
    "",
    "x",
    "LOW",
    "low",
    "compliant",
    "not-compliant",
    "10.0.0.300",
    "::1",
    "NLD",
    0,
    -1,
    1,
    5.0,
    101,
    100,
    True,
    [],
    ["a"],
    [1],
    {},
    {"a": 1},
    "2026-11-29T10:00:00Z",
    1795946400000,
    1795946400,
    "1795946400000",
    "2026-11-29T10:00:00",
    float("nan"),
    "A" * 300,
]


def envelope(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "subject": {"type": "user", "id": "alice"},
        "source": "test",
        "event_time": "2026-11-29T10:00:00.5+01:00",
        **copy.deepcopy(body),
    }


def mutate(rng: random.Random, raw: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(["top", "attr", "subject"])
        if target == "top":
            key = rng.choice(
                ["event_id", "type", "source", "event_time", "attributes", "subject", "extra"]
            )
        elif target == "subject":
            raw["subject"] = dict(raw["subject"]) if isinstance(raw.get("subject"), dict) else {}
            key = rng.choice(["type", "id", "other"])
            if rng.random() < 0.2:
                raw["subject"].pop(key, None)
            else:
                raw["subject"][key] = rng.choice(ODD_VALUES)
            continue
        else:
            attrs = raw.get("attributes")
            if not isinstance(attrs, dict):
                continue
            keys = [
                *attrs,
                "unknown_key",
                "score",
                "asn",
                "anomalies",
                "ip",
                "zone",
                "current_level",
            ]
            key = rng.choice(keys)
            if rng.random() < 0.2:
                attrs.pop(key, None)
            else:
                attrs[key] = rng.choice(ODD_VALUES)
            continue
        if rng.random() < 0.2:
            raw.pop(key, None)
        else:
            raw[key] = rng.choice(ODD_VALUES)
    return raw


def slow(raw: Any) -> Any:
    try:
        return _validate_with_models(raw)
    except SignalInvalid:
        return "invalid"


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_agrees_with_the_models(seed: int) -> None:
    rng = random.Random(seed)
    accepted = 0
    for i in range(3000):
        raw = envelope(BASE[i % len(BASE)])
        if i % 4:
            raw = mutate(rng, raw)
        fast = _fast_signal(raw)
        if fast is None:
            continue
        accepted += 1
        assert fast == slow(raw), raw
    assert accepted > 750  # the fast path is really taken for the common shapes


def test_every_base_shape_takes_the_fast_path() -> None:
    for body in BASE:
        raw = envelope(body)
        assert _fast_signal(raw) == slow(raw) != "invalid"
