"""Fixtures: sample records in JSON shape and a tiny in-process Confluent schema registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.schema_registry import FakeRegistry

T0 = 1795946400000  # 2026-11-29T10:00:00Z


@pytest.fixture
def signal() -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "type": "device-compliance-change",
        "subject": {"type": "user", "id": "alice"},
        "source": "mdm",
        "event_time": T0,
        "attributes": {
            "device_id": "D1",
            "previous_status": "compliant",
            "current_status": "not-compliant",
        },
    }


@pytest.fixture
def grant() -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": "g-1",
        "principal": {
            "id": "alice",
            "type": "user",
            "roles": ["employee"],
            "attr": {"department": "finance", "clearance": 3, "tags": ["a", "b"]},
        },
        "resource": {"kind": "document", "id": "doc-1", "attr": {"owner": "bob"}},
        "actions": ["read", "write"],
        "session_id": "s-1",
        "device_id": "D1",
        "issued_at": T0,
        "expires_at": T0 + 3_600_000,
        "on_behalf_of": [],
        "parent_grant_id": None,
    }


@pytest.fixture
def decision() -> dict[str, Any]:
    return {
        "decision_id": "d-0a1b2c",
        "grant_id": "g-1",
        "subject": "user:alice",
        "cause": {"kind": "signal", "event_id": "e-1", "signal_type": "device-compliance-change"},
        "effect": "EFFECT_DENY",
        "actions": [
            {
                "action": "read",
                "effect": "EFFECT_DENY",
                "policy": "resource.document.vdefault",
                "rule": "read-needs-compliant-device",
                "scope": "",
            }
        ],
        "request": {
            "principal": {
                "id": "alice",
                "roles": ["employee"],
                "attr": {"signals": {"device": {"compliant": False}}, "grant": {"id": "g-1"}},
            },
            "resource": {"kind": "document", "id": "doc-1", "attr": {}},
            "actions": ["read"],
        },
        "policy_digest": "sha256:" + "ab" * 32,
        "previous_policy_digest": None,
        "evaluated_at": T0 + 123,
        "cause_event_time": T0,
        "eval_duration_seconds": 0.000021,
        "errors": [],
        "call_id": None,  # check API decisions only (docs/check-api.md)
        "request_id": None,
    }


@pytest.fixture
def revocation() -> dict[str, Any]:
    return {
        "revocation_id": "r-672d31",
        "grant_id": "g-1",
        "subject": "user:alice",
        "session_id": "s-1",
        "device_id": "D1",
        "decision_id": "d-0a1b2c",
        "cause": {
            "kind": "signal",
            "event_id": "e-1",
            "signal_type": "credential-change",
            "credential_type": "password",
            "change_type": "update",
        },
        "denied_actions": ["read"],
        "policy": "resource.document.vdefault",
        "rule": "read-needs-compliant-device",
        "policy_digest": "sha256:" + "ab" * 32,
        "previous_policy_digest": "sha256:" + "cd" * 32,
        "revoked_at": T0 + 123,
        "cause_event_time": T0,
    }


@pytest.fixture
def deadletter() -> dict[str, Any]:
    return {
        "reason": "invalid JSON: unexpected character: line 1 column 2 (char 1)",
        "error": "decode",
        "topic": "signals.device",
        "partition": 0,
        "offset": 42,
        "key": b"user:alice",
        "value": b"{nope\x00\xff",
        "received_at": T0 + 5,
    }


@pytest.fixture
def records(
    signal: dict[str, Any],
    grant: dict[str, Any],
    decision: dict[str, Any],
    revocation: dict[str, Any],
    deadletter: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    return {
        "Signal": signal,
        "GrantEvent": grant,
        "Decision": decision,
        "Revocation": revocation,
        "DeadLetter": deadletter,
    }


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    with reg.serving():
        yield reg
