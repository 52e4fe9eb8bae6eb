"""Generated differential suite against the stock Cerbos PDP 0.55 (issue 7, item 4).

Twenty seeded stores from `tests.policy.gen.store` (resource, principal and role policies,
scopes with scopePermissions, derived roles, exported and local variables and constants,
outputs, globals, conditions over attributes of every JSON type, missing and mistyped
attributes), each compiled by `cerbos compile` and by Vigil, then 500 generated CheckResources
requests per store (several resources and actions each) answered by `cerbos server` and by
`streams.policy.api.check_resources`; every result must be equal (`tests.policy.gen.runner`).
`make diff-cerbos` runs more seeds. A difference found here becomes a regression test in
test_generated_regressions.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.external_tools import cerbos_binary
from tests.policy.gen.runner import run_store
from tests.policy.gen.store import Features, generate_store

SEEDS = range(1, 21)
REQUESTS_PER_STORE = 500
RESOURCES_PER_REQUEST = 2  # 1-3 resources per request


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_store_matches_stock_cerbos(seed: int, tmp_path: Path) -> None:
    binary = cerbos_binary()
    store = generate_store(seed)
    run = run_store(binary, store, tmp_path, REQUESTS_PER_STORE, RESOURCES_PER_REQUEST)
    assert not run.differences, f"{len(run.differences)} differences, first:\n" + "\n".join(
        str(d) for d in run.differences[:3]
    )
    assert run.requests == REQUESTS_PER_STORE


def test_generator_is_deterministic() -> None:
    assert generate_store(7).files == generate_store(7).files
    assert generate_store(7).files != generate_store(8).files


def test_generated_stores_cover_the_policy_features() -> None:
    """The 20 stores of the suite use every feature the generator knows."""
    features = Features(role_policies=True, principal_policies=True)
    text = "\n".join(t for s in SEEDS for t in generate_store(s, features).files.values())
    for feature in (
        "principalPolicy",
        "rolePolicy",
        "derivedRoles",
        "exportVariables",
        "exportConstants",
        "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS",
        "SCOPE_PERMISSIONS_OVERRIDE_PARENT",
        "ruleActivated",
        "conditionNotMet",
        "runtime.effectiveDerivedRoles",
        "none",
        "any",
        "all",
        "has(",
        "exists(",
        "G.",
        "C.",
        "V.",
        "== null",
        "timestamp(",
    ):
        assert feature in text, feature


def test_make_target_runner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`make diff-cerbos` runs `tests.policy.gen.runner`: a summary line, a differences file."""
    from tests.policy.gen.runner import main

    out = tmp_path / "d.jsonl"
    assert main(["--seeds", "1", "--start", "3", "--requests", "20", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stores"] == 1 and summary["requests"] == 20 and summary["differences"] == 0
    assert out.read_text() == ""
