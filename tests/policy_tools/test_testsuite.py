"""`streams.policy.testsuite` runner semantics with small suites (pure, in process)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streams.policy.model import ActionResult
from streams.policy.testsuite import (
    ERRORED,
    FAILED,
    PASSED,
    SKIPPED,
    EngineCache,
    discover_suites,
    format_human,
    run_suites,
)

POLICY = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  rules:
    - name: read
      actions: ["read"]
      roles: ["user"]
      effect: EFFECT_ALLOW
    - name: edit-in-test-env
      actions: ["edit"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: G.env == "test" && now() < timestamp("2030-01-01T00:00:00Z")
"""


def _bundle(root: Path, suite: str, **extra: str) -> Path:
    files = {"doc.yaml": POLICY, "tests/doc_test.yaml": suite, **extra}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


SUITE = """
name: S
principals:
  u: {id: u1, roles: [user]}
  v: {id: v1, roles: [viewer]}
resources:
  d: {id: d1, kind: doc}
tests:
  - name: globals and now come from options
    options:
      now: "2029-12-31T00:00:00Z"
      globals: {env: test}
    input: {principals: [u, v], resources: [d], actions: [read, edit]}
    expected:
      - {principal: u, resource: d, actions: {read: EFFECT_ALLOW, edit: EFFECT_ALLOW}}
  - name: later now denies
    options:
      now: "2031-01-01T00:00:00Z"
      globals: {env: test}
    input: {principals: [u], resources: [d], actions: [edit]}
    expected:
      - {principal: u, resource: d, actions: {edit: EFFECT_DENY}}
"""


def test_options_and_implicit_deny(tmp_path: Path) -> None:
    run = run_suites(_bundle(tmp_path, SUITE))
    assert run.ok, format_human(run)
    counts = run.counts()
    assert counts[PASSED] == 5 and counts[FAILED] == 0
    js = run.to_json()
    assert js["summary"] == {
        "overallResult": "RESULT_PASSED",
        "testsCount": 5,
        "resultCounts": [{"result": "RESULT_PASSED", "count": 5}],
    }


def test_suite_options_apply_field_by_field(tmp_path: Path) -> None:
    suite = SUITE.replace("name: S\n", "name: S\noptions:\n  globals: {env: test}\n").replace(
        "      globals: {env: test}\n", ""
    )
    assert run_suites(_bundle(tmp_path, suite)).ok


def test_missing_fixture_and_unknown_action_are_errors(tmp_path: Path) -> None:
    suite = """
    name: S
    principals:
      u: {id: u1, roles: [user]}
    resources:
      d: {id: d1, kind: doc}
    tests:
      - name: ghost principal
        input: {principals: [ghost], resources: [d], actions: [read]}
        expected:
          - {principal: ghost, resource: d, actions: {read: EFFECT_ALLOW}}
      - name: expectation outside the input
        input: {principals: [u], resources: [d], actions: [read]}
        expected:
          - {principal: u, resource: d, actions: {read: EFFECT_ALLOW, fly: EFFECT_ALLOW}}
      - name: unknown group
        input: {principalGroups: [nobody], resources: [d], actions: [read]}
        expected:
          - {principal: u, resource: d, actions: {read: EFFECT_ALLOW}}
    """
    run = run_suites(_bundle(tmp_path, suite))
    assert not run.ok
    errors = [o.error for _, o in run.failures()]
    assert all(o.result == ERRORED for _, o in run.failures())
    assert any("principal 'ghost' not defined" in (e or "") for e in errors)
    assert any("'fly', which is not an input" in (e or "") for e in errors)
    assert any("principalGroup 'nobody' is not defined" in (e or "") for e in errors)
    text = format_human(run)
    assert "ERROR S > ghost principal > ghost/d/read: principal 'ghost' not defined" in text


def test_skip_and_run_filter(tmp_path: Path) -> None:
    suite = SUITE.replace(
        "  - name: later now denies\n", "  - name: later now denies\n    skip: true\n"
    )
    run = run_suites(_bundle(tmp_path, suite))
    assert run.counts()[SKIPPED] == 1 and run.ok
    only = run_suites(tmp_path, run="^later")
    assert only.tests == 1 and only.counts()[SKIPPED] == 1


def test_bad_suite_file_is_reported(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, SUITE, **{"more/broken_test.yaml": "tests: [\n"})
    run = run_suites(bundle)
    assert not run.ok
    broken = [s for s in run.suites if s.file == "more/broken_test.yaml"][0]
    assert broken.error and "failed to load test suite" in broken.error
    assert broken.name == "Unknown"  # as Cerbos names a suite it cannot load
    assert run.to_json()["summary"]["overallResult"] == "RESULT_ERRORED"


def test_discovery_skips_hidden_directories(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, SUITE, **{".git/x_test.yaml": "x", "a/b/c_test.yml": "x"})
    assert [p.relative_to(bundle).as_posix() for p in discover_suites(bundle)] == [
        "a/b/c_test.yml",
        "tests/doc_test.yaml",
    ]


class _FakeResult:
    def __init__(self, actions: list[str], outputs: list[dict[str, Any]]) -> None:
        self.actions = {
            a: ActionResult("EFFECT_ALLOW", "resource.doc.vdefault", "r", "") for a in actions
        }
        self.effective_derived_roles: list[str] = []
        self.errors: list[str] = []
        self.outputs = outputs


class _FakeEngine:
    """Stands in for an engine with rule outputs (being added to PolicyEngine)."""

    def check(
        self,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: list[str],
        **_: Any,
    ) -> _FakeResult:
        return _FakeResult(
            actions,
            [
                {
                    "src": "resource.doc.vdefault#r",
                    "action": "read",
                    "val": {"n": 1.0, "who": principal["id"]},
                },
                {"src": "resource.doc.vdefault#extra", "action": "read", "val": True},
            ],
        )


def test_expected_outputs(tmp_path: Path) -> None:
    suite = """
    name: S
    principals:
      u: {id: u1, roles: [user]}
    resources:
      d: {id: d1, kind: doc}
    tests:
      - name: outputs match
        input: {principals: [u], resources: [d], actions: [read]}
        expected:
          - principal: u
            resource: d
            actions: {read: EFFECT_ALLOW}
            outputs:
              - action: read
                expected:
                  - {src: "resource.doc.vdefault#r", val: {n: 1, who: u1}}
      - name: outputs differ
        input: {principals: [u], resources: [d], actions: [read]}
        expected:
          - principal: u
            resource: d
            actions: {read: EFFECT_ALLOW}
            outputs:
              - action: read
                expected:
                  - {src: "resource.doc.vdefault#r", val: {n: 2, who: u1}}
                  - {src: "resource.doc.vdefault#missing", val: 1}
    """
    run = run_suites(_bundle(tmp_path, suite), lambda options: _FakeEngine())  # type: ignore[arg-type,return-value]
    results = {o.test: o for s in run.suites for o in s.outcomes}
    assert results["outputs match"].result == PASSED
    bad = results["outputs differ"]
    assert bad.result == FAILED
    assert bad.output_failures == [
        {
            "src": "resource.doc.vdefault#r",
            "mismatched": {"expected": {"n": 2, "who": "u1"}, "actual": {"n": 1, "who": "u1"}},
        },
        {"src": "resource.doc.vdefault#missing", "missing": {"expected": 1}},
    ]
    text = format_human(run)
    assert (
        'output resource.doc.vdefault#r: expected {"n": 2, "who": "u1"}, got {"n": 1, "who": "u1"}'
        in text
    )
    assert "output resource.doc.vdefault#missing: expected 1, none produced" in text


def test_engine_cache_compiles_once_per_option_set(tmp_path: Path) -> None:
    cache = EngineCache(_bundle(tmp_path, SUITE))
    a = cache({"globals_": {"env": "test"}})
    assert cache({"globals_": {"env": "test"}}) is a
    assert cache({"globals_": {"env": "prod"}}) is not a
