"""Run the Cerbos-format test suites in policies/tests/ through our engine.

The same files are run by stock Cerbos (`cerbos compile`, see test_differential.py), so one
corpus checks both evaluators. Combinations missing from `expected` must be DENY, as in Cerbos.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.policy import PolicyEngine

from .conftest import POLICIES

SUITES = sorted((POLICIES / "tests").glob("*_test.yaml"))


def _fixtures(suite_dir: Path, suite: dict[str, Any], name: str) -> dict[str, Any]:
    data = dict(suite.get(name) or {})
    path = suite_dir / "testdata" / f"{name}.yaml"
    if path.exists():
        data = {**(yaml.safe_load(path.read_text()) or {}).get(name, {}), **data}
    return data


def _cases() -> list[tuple[str, dict[str, Any], dict[str, Any], list[str], dict[str, str], Any]]:
    cases = []
    for suite_path in SUITES:
        suite = yaml.safe_load(suite_path.read_text())
        principals = _fixtures(suite_path.parent, suite, "principals")
        resources = _fixtures(suite_path.parent, suite, "resources")
        now = (suite.get("options") or {}).get("now")
        for test in suite["tests"]:
            inp = test["input"]
            expected = {(e["principal"], e["resource"]): e["actions"] for e in test["expected"]}
            for pn in inp["principals"]:
                for rn in inp["resources"]:
                    exp = expected.get((pn, rn), {})
                    want = {a: exp.get(a, "EFFECT_DENY") for a in inp["actions"]}
                    cases.append(
                        (
                            f"{suite_path.stem}:{test['name']}:{pn}:{rn}",
                            principals[pn],
                            resources[rn],
                            inp["actions"],
                            want,
                            now,
                        )
                    )
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("name", "prin", "res", "actions", "want", "now"), CASES, ids=[c[0] for c in CASES]
)
def test_suite_case(
    engine: PolicyEngine,
    name: str,
    prin: dict[str, Any],
    res: dict[str, Any],
    actions: list[str],
    want: dict[str, str],
    now: Any,
) -> None:
    when = dt.datetime.fromisoformat(str(now).replace("Z", "+00:00")) if now else None
    result = engine.check(prin, res, actions, now=when)
    assert {a: r.effect for a, r in result.actions.items()} == want
