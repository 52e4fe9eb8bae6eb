"""The default bundle in policies/: signal changes flip exactly the decisions they should."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from streams.policy import PolicyEngine

from .conftest import principal

DOC = {"kind": "document", "id": "doc-1", "attr": {"owner": "alice"}}
TOOL = {"kind": "tool", "id": "search", "attr": {}}
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
A, D = "EFFECT_ALLOW", "EFFECT_DENY"

CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, tuple[str, str | None]]]] = [
    (
        "healthy owner",
        principal(),
        DOC,
        {
            "read": (A, "employee-read"),
            "write": (A, "employee-write"),
            "delete": (A, "employee-write"),
            "share": (A, "owner-share"),
            "print": (D, None),
        },
    ),
    (
        "non-compliant device keeps read only",
        principal(device={"compliant": False, "status": "not-compliant"}),
        DOC,
        {"read": (A, "employee-read"), "write": (D, "write-needs-compliant-device")},
    ),
    (
        "untrusted network blocks writes",
        principal(network={"zone": "untrusted"}),
        DOC,
        {"read": (A, "employee-read"), "delete": (D, "write-blocked-from-untrusted-network")},
    ),
    (
        "high risk denies all",
        principal(risk={"level": "HIGH", "score": 90.0}),
        DOC,
        {"read": (D, "deny-high-risk"), "write": (D, "deny-high-risk")},
    ),
    (
        "compromised credential denies all",
        principal(identity={"credential_compromised": True}),
        DOC,
        {"read": (D, "deny-compromised-credential"), "share": (D, "deny-compromised-credential")},
    ),
    (
        "disabled account",
        principal(identity={"account_status": "disabled"}),
        DOC,
        {"read": (D, "deny-disabled-account")},
    ),
    (
        "revoked session",
        principal(session={"revoked": True}),
        DOC,
        {"read": (D, "deny-revoked-session")},
    ),
    (
        # Expiry is enforced by the pipeline (an expired grant leaves the active set before any
        # evaluation), so the policy does not read grant.expires_at: that keeps checks memoizable.
        "the policy does not look at grant expiry",
        principal(expires_at="2026-05-31T23:59:59Z"),
        DOC,
        {"read": (A, "employee-read")},
    ),
    (
        "non-owner cannot share",
        principal("bob"),
        DOC,
        {"share": (D, None), "read": (A, "employee-read")},
    ),
    (
        "trusted agent",
        principal("bot", ("agent",)),
        TOOL,
        {
            "invoke": (A, "trusted-agent-invoke"),
            "admin": (D, "deny-admin-for-agents"),
            "admin:reset:all": (D, "deny-admin-for-agents"),
        },
    ),
    (
        "medium-risk agent",
        principal("bot", ("agent",), risk={"level": "MEDIUM"}),
        TOOL,
        {"invoke": (D, None)},
    ),
    (
        "agent with revoked session",
        principal("bot", ("agent",), session={"revoked": True}),
        TOOL,
        {"invoke": (D, "deny-revoked-session")},
    ),
    ("agent cannot read documents", principal("bot", ("agent",)), DOC, {"read": (D, None)}),
]


@pytest.mark.parametrize(("name", "prin", "res", "expected"), CASES, ids=[c[0] for c in CASES])
def test_default_bundle(
    engine: PolicyEngine,
    name: str,
    prin: dict[str, Any],
    res: dict[str, Any],
    expected: dict[str, tuple[str, str | None]],
) -> None:
    result = engine.check(prin, res, list(expected), now=NOW)
    got = {a: (r.effect, r.rule) for a, r in result.actions.items()}
    assert got == expected
    assert result.errors == []
    for r in result.actions.values():
        assert r.policy == f"resource.{res['kind']}.vdefault"


def test_integer_scores_are_doubles(engine: PolicyEngine) -> None:
    """Ints from JSON callers are converted, so `score > 50` style comparisons work."""
    p = principal(risk={"score": 70})
    assert engine.check(p, DOC, ["read"], now=NOW).allowed("read")


def test_missing_signals_never_allow(engine: PolicyEngine) -> None:
    """No signals at all: every condition errors, nothing is allowed, errors are reported."""
    p = {"id": "alice", "roles": ["employee"], "attr": {}}
    result = engine.check(p, DOC, ["read", "write", "share"], now=NOW)
    assert not any(result.allowed(a) for a in ("read", "write", "share"))
    assert result.errors


def test_effective_derived_roles(engine: PolicyEngine) -> None:
    assert engine.check(principal(), DOC, ["read"]).effective_derived_roles == ["owner"]
    bot = principal("bot", ("agent",))
    assert engine.check(bot, TOOL, ["invoke"]).effective_derived_roles == ["trusted_agent"]


def test_unknown_kind_is_no_match(engine: PolicyEngine) -> None:
    result = engine.check(principal(), {"kind": "nope", "id": "x"}, ["read"])
    r = result.actions["read"]
    assert (r.effect, r.policy, r.rule, r.scope) == ("EFFECT_DENY", "NO_MATCH", None, "")
    assert not result.allowed("read") and not result.allowed("never-asked")


def test_unknown_version_is_no_match(engine: PolicyEngine) -> None:
    res = dict(DOC, policyVersion="v2")
    assert engine.check(principal(), res, ["read"]).actions["read"].policy == "NO_MATCH"
