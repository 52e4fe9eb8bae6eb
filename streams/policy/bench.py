"""Micro-benchmark of `PolicyEngine.check()` on the default bundle (not a test threshold).

Run: `.venv/bin/python -m streams.policy.bench [policies_dir] [iterations]`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .engine import PolicyEngine


def _principal(roles: list[str]) -> dict[str, Any]:
    return {
        "id": "alice",
        "roles": roles,
        "attr": {
            "department": "eng",
            "signals": {
                "risk": {"level": "LOW", "score": 12},
                "device": {"id": "D1", "compliant": True, "status": "compliant"},
                "identity": {
                    "account_status": "enabled",
                    "assurance_level": "aal2",
                    "credential_compromised": False,
                },
                "network": {"zone": "corp", "country": "NL", "ip": "10.0.0.7"},
                "session": {"id": "s-1", "revoked": False},
            },
            "grant": {"id": "g-1", "issued_at": "2026-01-01T00:00:00Z", "expires_at": ""},
        },
    }


def bench(directory: str = "policies", iterations: int = 20_000) -> dict[str, float]:
    """Median-free simple timing: µs per check() for a few representative calls."""
    engine = PolicyEngine.from_directory(directory)
    cases = {
        "document read (1 action)": (
            _principal(["employee"]),
            {"kind": "document", "id": "d1", "attr": {"owner": "alice"}},
            ["read"],
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
        for _ in range(500):
            engine.check(p, r, actions)
        t0 = time.perf_counter()
        for _ in range(iterations):
            engine.check(p, r, actions)
        out[name] = (time.perf_counter() - t0) / iterations * 1e6
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    results = bench(args[0] if args else "policies", int(args[1]) if len(args) > 1 else 20_000)
    for case, us in results.items():
        print(f"{case:40s} {us:8.1f} µs/check")
