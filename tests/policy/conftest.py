"""Shared fixtures: the default bundle, principals with live signals, and tmp policy dirs."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.policy import PolicyEngine

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"

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


def principal(
    pid: str = "alice",
    roles: tuple[str, ...] = ("employee",),
    *,
    expires_at: str = "",
    **overrides: dict[str, Any],
) -> dict[str, Any]:
    """A principal with healthy signals; `overrides` patch signal dimensions, e.g.
    `risk={"level": "HIGH"}`."""
    signals = copy.deepcopy(HEALTHY_SIGNALS)
    for dim, patch in overrides.items():
        signals[dim].update(patch)
    return {
        "id": pid,
        "roles": list(roles),
        "attr": {
            "signals": signals,
            "grant": {"id": "g-1", "issued_at": "2026-01-01T00:00:00Z", "expires_at": expires_at},
        },
    }


@pytest.fixture(scope="session")
def engine() -> PolicyEngine:
    return PolicyEngine.from_directory(POLICIES)


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Write {relative path: yaml text} into a fresh directory and return it."""

    def _make(files: dict[str, str]) -> Path:
        root = tmp_path / "bundle"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        root.mkdir(exist_ok=True)
        return root

    return _make
