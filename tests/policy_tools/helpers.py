"""Shared pieces of the policy-tool tests: running `vigil`, and the stock Cerbos binary/server
(fetched and started by the helpers of tests/policy/test_differential.py), one CheckResources
call to it, and the normalisation under which its responses must equal Vigil's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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


def post_check(url: str, body: Any) -> tuple[int, Any]:
    """POST one CheckResources request to a Cerbos PDP: (HTTP status, parsed JSON body)."""
    req = urllib.request.Request(
        f"{url}/api/check/resources",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    for attempt in range(3):  # a check is idempotent: a connection the PDP reset is retried
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except (urllib.error.URLError, ConnectionError):
            if attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def strip_response(response: dict[str, Any]) -> dict[str, Any]:
    """The response without `cerbosCallId` (unique per call), with effectiveDerivedRoles
    sorted: it is a set, and stock Cerbos lists it in a different order on every call."""
    out = {k: v for k, v in response.items() if k != "cerbosCallId"}
    for result in out.get("results", []):
        meta = result.get("meta", {})
        if "effectiveDerivedRoles" in meta:
            meta["effectiveDerivedRoles"] = sorted(meta["effectiveDerivedRoles"])
    return out
