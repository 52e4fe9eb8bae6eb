"""`vigil policy compile|test` as subprocesses: the project's suites, the Cerbos-format examples
in data/ (also run through stock `cerbos compile`, which must agree check by check), failures,
compile errors and `--run`."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .helpers import DATA, EXAMPLES, cerbos_binary, skip_unless_supported, vigil


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _checks(report: dict[str, Any]) -> dict[tuple[str, str, str, str, str], str]:
    """(suite, test, principal, resource, action) -> result, from Cerbos TestResults JSON."""
    out = {}
    for suite in report["suites"]:
        for case in suite.get("testCases", []):
            for p in case["principals"]:
                for r in p["resources"]:
                    for a in r["actions"]:
                        key = (suite["name"], case["name"], p["name"], r["name"], a["name"])
                        out[key] = a["details"]["result"]
    return out


def test_project_policy_suites_pass() -> None:
    proc = vigil("policy", "test", "policies")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "VigilDocumentAndToolSuite" in proc.stdout and "VigilDelegatedMailboxSuite" in proc.stdout
    )
    assert " 0 failed" in proc.stdout and "122 passed" in proc.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_suites_pass_with_vigil(example: Path) -> None:
    skip_unless_supported(example)
    proc = vigil("policy", "test", str(example))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failed" in proc.stdout and " 0 errored" in proc.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_suites_agree_with_stock_cerbos(example: Path) -> None:
    skip_unless_supported(example)
    binary = cerbos_binary()
    theirs = subprocess.run(
        [str(binary), "compile", "--output=json", "--color=never", str(example)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    ours = vigil("policy", "test", "--output", "json", str(example))
    assert ours.returncode == 0, ours.stdout + ours.stderr
    cerbos_report, vigil_report = json.loads(theirs.stdout), json.loads(ours.stdout)
    assert _checks(vigil_report) == _checks(cerbos_report)
    assert vigil_report["summary"] == cerbos_report["summary"]


def test_examples_exercise_groups_skip_auxdata_and_options() -> None:
    text = "\n".join(p.read_text() for p in DATA.rglob("*.yaml"))
    for feature in (
        "principalGroups",
        "resourceGroups",
        "skip: true",
        "auxData",
        "now:",
        "globals",
    ):
        assert feature in text


def test_failing_test_is_reported_with_expected_and_actual(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    for src in (DATA / "album").rglob("*"):
        if src.is_file():
            dst = bundle / src.relative_to(DATA / "album")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    suite = bundle / "tests" / "album_object_test.yaml"
    # Bradley may not view Alicia's private album; claim he may.
    suite.write_text(
        suite.read_text().replace(
            "resource: alicia_public_album\n        actions: {view: EFFECT_ALLOW}",
            "resources: [alicia_public_album, alicia_private_album]\n"
            "        actions: {view: EFFECT_ALLOW}",
        )
    )
    proc = vigil("policy", "test", str(bundle))
    assert proc.returncode == 1
    out = proc.stdout
    assert "FAIL" in out and "principal bradley, resource alicia_private_album, action view" in out
    assert "expected EFFECT_ALLOW, got EFFECT_DENY" in out
    assert "1 failed" in out and "1 skipped" in out
    js = vigil("policy", "test", "--output", "json", str(bundle))
    assert js.returncode == 1
    report = json.loads(js.stdout)
    assert report["summary"]["overallResult"] == "RESULT_FAILED"
    failed = [k for k, v in _checks(report).items() if v == "RESULT_FAILED"]
    assert [k[2:] for k in failed] == [("bradley", "alicia_private_album", "view")]


def test_run_selects_tests_by_regex() -> None:
    proc = vigil("policy", "test", "--run", "Legal hold", str(DATA / "album"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 test(s), 4 check(s): 4 passed" in proc.stdout


def test_compile_summary_then_tests() -> None:
    proc = vigil("policy", "compile", "policies")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Compiled 4 policy file(s)" in proc.stdout
    assert "digest sha256:" in proc.stdout
    assert "122 passed" in proc.stdout
    skipped = vigil("policy", "compile", "--skip-tests", "policies")
    assert skipped.returncode == 0 and "passed" not in skipped.stdout


def test_compile_runs_failing_tests_and_exits_1(tmp_path: Path) -> None:
    bundle = _write(
        tmp_path,
        {
            "doc.yaml": """
                apiVersion: api.cerbos.dev/v1
                resourcePolicy:
                  resource: doc
                  version: default
                  rules:
                    - actions: ["read"]
                      roles: ["user"]
                      effect: EFFECT_ALLOW
            """,
            "tests/doc_test.yaml": """
                name: DocSuite
                principals:
                  u: {id: u1, roles: [user]}
                resources:
                  d: {id: d1, kind: doc}
                tests:
                  - name: users write
                    input: {principals: [u], resources: [d], actions: [read, write]}
                    expected:
                      - {principal: u, resource: d, actions: {read: EFFECT_ALLOW, write: EFFECT_ALLOW}}
            """,
        },
    )
    proc = vigil("policy", "compile", str(bundle))
    assert proc.returncode == 1
    assert "principal u, resource d, action write" in proc.stdout
    assert vigil("policy", "compile", "--skip-tests", str(bundle)).returncode == 0


def test_compile_errors_are_printed_with_file_and_path(tmp_path: Path) -> None:
    bundle = _write(
        tmp_path,
        {
            "bad.yaml": """
                apiVersion: api.cerbos.dev/v1
                resourcePolicy:
                  resource: doc
                  version: default
                  importDerivedRoles: [missing_set]
                  rules:
                    - actions: ["read"]
                      roles: ["user"]
                      effect: EFFECT_ALLOW
                      condition:
                        match:
                          expr: R.attr.x ==
            """,
            "sub/worse.yaml": """
                apiVersion: api.cerbos.dev/v1
                resourcePolicy:
                  resource: other
                  version: default
                  rules:
                    - actions: ["read"]
                      derivedRoles: ["ghost"]
                      effect: EFFECT_ALLOW
            """,
        },
    )
    for cmd in ("compile", "test", "eval"):
        proc = vigil("policy", cmd, str(bundle), stdin="")
        assert proc.returncode == 1, cmd
        lines = proc.stdout.splitlines()
        assert any(
            line.startswith("bad.yaml: resourcePolicy.rules[0].condition.match.expr: ")
            for line in lines
        ), lines
        assert any(
            line.startswith("bad.yaml: resourcePolicy.importDerivedRoles[0]: ") for line in lines
        ), lines
        assert any(
            line.startswith("sub/worse.yaml: resourcePolicy.rules[0].derivedRoles[0]")
            for line in lines
        )
        assert "compile error(s)" in proc.stderr
