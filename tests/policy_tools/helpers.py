"""Shared pieces of the policy-tool tests: running `vigil`, and the stock Cerbos binary/server
(fetched and started by the helpers of tests/policy/test_differential.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.external_tools import cerbos_binary  # noqa: F401 (re-exported)
from tests.policy.test_differential import _server  # noqa: F401 (re-exported)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = sorted(p for p in DATA.iterdir() if p.is_dir())


def skip_unless_supported(example: Path) -> None:
    """Examples that need rule outputs skip on an engine without them."""
    from streams.policy.model import CheckResult

    if "outputs" in example.name and "outputs" not in CheckResult.__dataclass_fields__:
        pytest.skip("this policy engine does not produce rule outputs")


def vigil(
    *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `vigil ARGS` as a subprocess (as users and outside tools do)."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=timeout,
    )
