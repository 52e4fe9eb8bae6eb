"""Shared fixtures: the default bundle, principals with live signals, and tmp policy dirs."""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.policy import PolicyEngine
from streams.policy.bench import HEALTHY_SIGNALS

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"


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
