"""Micro-benchmark of `PolicyEngine.check()` on the default bundle (not a test threshold).

Run: `.venv/bin/python -m streams.policy.bench [policies_dir] [iterations]`.

Single checks are timed without a memo (each check on its own, like the old hot path). The
"grants" cases time the pipeline pattern: one signal re-evaluates all active grants of one
subject (same principal and signals; different grant ids, expiries, resources, devices and
actions), without a memo and with one `CheckMemo` per re-evaluation.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from typing import Any

from .engine import PolicyEngine

#: The reserved `signals` attributes of a principal in good standing (docs/policies.md): the
#: sample request of the benchmarks and the policy tests.
HEALTHY_SIGNALS: dict[str, Any] = {
    "risk": {"level": "LOW", "score": 10.0},
    "device": {"id": "D1", "compliant": True, "status": "compliant"},
    "identity": {
        "account_status": "enabled",
        "assurance_level": "aal2",
        "credential_compromised": False,
    },
    "network": {"zone": "corp", "country": "NL", "ip": "10.0.0.1"},
    "session": {"id": "s-1", "revoked": False},
}


def _principal(roles: list[str]) -> dict[str, Any]:
    return {
        "id": "alice",
        "roles": roles,
        "attr": {
            "department": "eng",
            "signals": copy.deepcopy(HEALTHY_SIGNALS),
            "grant": {"id": "g-1", "issued_at": "2026-01-01T00:00:00Z", "expires_at": ""},
        },
    }


_SUBJECT: dict[str, Any] = {
    "risk": {"level": "LOW", "score": 12.0},
    "identity": {
        "account_status": "enabled",
        "assurance_level": "aal2",
        "credential_compromised": False,
        "credential_changed_at": "",
    },
    "network": {
        "zone": "corp",
        "country": "NL",
        "ip": "10.0.0.7",
        "asn": 0.0,
        "anomalies": [],
    },
}
_DEVICES = {
    "D1": {"id": "D1", "compliant": True, "status": "compliant"},
    "": {"id": "", "compliant": False, "status": "unknown"},
}


def grant_requests(n: int = 10) -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    """The requests of one re-evaluation of `n` grants of one subject, built like
    `streams.processing.evaluation.effective_request` (fresh dicts per grant)."""
    out = []
    for i in range(n):
        device = "D1" if i % 3 == 0 else ""  # some grants are device-bound
        expires = "" if i % 2 else f"2999-01-{i + 1:02d}T00:00:00Z"
        attr = {
            "department": "eng",
            "signals": {
                **_SUBJECT,
                "device": dict(_DEVICES[device]),
                "session": {"id": f"s-{i % 2}", "revoked": False},
            },
            "grant": {"id": f"g-{i}", "issued_at": "2026-01-01T00:00:00Z", "expires_at": expires},
        }
        principal = {"id": "alice", "roles": ["employee"], "attr": attr}
        owner = "alice" if i % 4 == 0 else "bob"
        resource = {"kind": "document", "id": f"doc-{i}", "attr": {"owner": owner}}
        actions = ["read", "write"] if device else ["read"]
        out.append((principal, resource, actions))
    return out


def _time(fn: Callable[[], Any], iterations: int, per: int) -> float:
    for _ in range(max(50, iterations // 20)):
        fn()
    t0 = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - t0) / (iterations * per) * 1e6


def bench(directory: str = "policies", iterations: int = 20_000) -> dict[str, float]:
    """Simple timing: µs per check() for a few representative calls."""
    engine = PolicyEngine.from_directory(directory)
    cases = {
        "document read (1 action)": (
            _principal(["employee"]),
            {"kind": "document", "id": "d1", "attr": {"owner": "alice"}},
            ["read"],
        ),
        "document read+write": (
            _principal(["employee"]),
            {"kind": "document", "id": "d1", "attr": {"owner": "alice"}},
            ["read", "write"],
        ),
        "document read+write+delete+share": (
            _principal(["employee"]),
            {"kind": "document", "id": "d1", "attr": {"owner": "alice"}},
            ["read", "write", "delete", "share"],
        ),
        "tool invoke (agent)": (
            _principal(["agent"]),
            {"kind": "tool", "id": "search", "attr": {}},
            ["invoke"],
        ),
        "unknown kind (NO_MATCH)": (
            _principal(["employee"]),
            {"kind": "nope", "id": "x", "attr": {}},
            ["read"],
        ),
    }
    out: dict[str, float] = {}
    for name, (p, r, actions) in cases.items():

        def one(p: dict[str, Any] = p, r: dict[str, Any] = r, a: list[str] = actions) -> None:
            engine.check(p, r, a)

        out[name] = _time(one, iterations, 1)

    grants = grant_requests(10)
    rounds = max(1, iterations // 10)

    def no_memo() -> None:
        for p, r, a in grants:
            engine.check(p, r, a)

    def with_memo() -> None:
        memo = engine.new_memo()
        for p, r, a in grants:
            engine.check(p, r, a, memo=memo)

    out["10 grants, no memo (per check)"] = _time(no_memo, rounds, len(grants))
    out["10 grants, one memo (per check)"] = _time(with_memo, rounds, len(grants))
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    results = bench(args[0] if args else "policies", int(args[1]) if len(args) > 1 else 20_000)
    for case, us in results.items():
        print(f"{case:40s} {us:8.1f} µs/check")
