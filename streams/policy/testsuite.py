"""Run Cerbos-format policy test suites (`*_test.yaml`, as `cerbos compile` does) on Vigil.

Policy authors write one set of suites and run it with both evaluators: `vigil policy test DIR`
and stock `cerbos compile DIR`. Semantics follow Cerbos:

- suites are `*_test.{yaml,yml,json}` anywhere under DIR (hidden paths skipped); fixtures come
  from the suite and from `testdata/{principals,resources,auxdata}.{yaml,yml,json}` next to it
  (the suite's own definitions win); `principalGroups` / `resourceGroups` name lists of fixtures;
- a test runs every (principal, resource) of its input for all input actions; a pair or action
  not listed in `expected` must be `EFFECT_DENY`; expected `outputs` must be produced (same `src`
  and value) for their action, extra outputs are fine;
- `options` (`now`, `defaultPolicyVersion`, `defaultScope`, `lenientScopeSearch`, `globals`) on a
  test override the suite's field by field; `skip: true` skips a suite or a test.

Results mirror Cerbos' `TestResults` JSON (`cerbos compile --output=json`): one entry per
principal/resource/action with `RESULT_PASSED|FAILED|SKIPPED|ERRORED`. The runner is pure: it
takes a callable that builds (and may cache) an engine for a set of options.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .api import UnsupportedOption, build_engine, cerbos_policy_key, parse_time, to_json_value
from .docspec import check_document
from .engine import PolicyEngine
from .model import EFFECT_DENY, PolicyCompileError
from .yamlload import load_json, load_yaml_documents

PASSED = "RESULT_PASSED"
FAILED = "RESULT_FAILED"
SKIPPED = "RESULT_SKIPPED"
ERRORED = "RESULT_ERRORED"
_SUFFIXES = (".yaml", ".yml", ".json")
_ORDER = (SKIPPED, PASSED, FAILED, ERRORED)  # Cerbos enum order (resultCounts)

#: Test-suite option name -> `build_engine` keyword (`now` is a check argument instead).
ENGINE_OPTION_NAMES = {
    "globals": "globals_",
    "defaultPolicyVersion": "default_policy_version",
    "lenientScopeSearch": "lenient_scope_search",
    "defaultScope": "default_scope",
}

EngineFactory = Callable[[Mapping[str, Any]], PolicyEngine]


class SuiteError(ValueError):
    """A suite or test that cannot be run as written (bad YAML, unknown fixture name)."""


@dataclass(slots=True)
class ActionOutcome:
    """The result of one principal/resource/action check of a test."""

    test: str
    principal: str
    resource: str
    action: str
    result: str
    expected: str | None = None
    actual: str | None = None
    policy: str | None = None
    rule: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)  # actual outputs for the action
    output_failures: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    skip_reason: str | None = None
    eval_errors: list[str] = field(default_factory=list)

    def details(self) -> dict[str, Any]:
        """Cerbos `TestResults.Details` of this action."""
        out: dict[str, Any] = {"result": self.result}
        if self.result == PASSED:
            success: dict[str, Any] = {"effect": self.actual}
            if self.outputs:
                success["outputs"] = self.outputs
            out["success"] = success
        elif self.result == FAILED:
            failure: dict[str, Any] = {"expected": self.expected, "actual": self.actual}
            if self.output_failures:
                failure["outputs"] = self.output_failures
            out["failure"] = failure
        elif self.result == SKIPPED:
            if self.skip_reason:
                out["skipReason"] = self.skip_reason
        elif self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class SuiteResult:
    """All outcomes of one suite file, or the error that prevented running it."""

    file: str
    name: str
    description: str = ""
    outcomes: list[ActionOutcome] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)  # test names run (or skipped), in order
    error: str | None = None
    skip_reason: str | None = None
    skipped: bool = False

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(_ORDER, 0)
        for o in self.outcomes:
            counts[o.result] += 1
        return counts

    @property
    def overall(self) -> str:
        return _overall(self.counts(), self.error is not None)

    def to_json(self) -> dict[str, Any]:
        """Cerbos `TestResults.Suite`."""
        out: dict[str, Any] = {"file": self.file, "name": self.name}
        out["summary"] = _summary(self.counts(), self.error is not None)
        cases: list[dict[str, Any]] = []
        for test in self.tests:
            principals: dict[str, dict[str, list[dict[str, Any]]]] = {}
            for o in self.outcomes:
                if o.test != test:
                    continue
                res = principals.setdefault(o.principal, {}).setdefault(o.resource, [])
                res.append({"name": o.action, "details": o.details()})
            cases.append(
                {
                    "name": test,
                    "principals": [
                        {
                            "name": p,
                            "resources": [{"name": r, "actions": a} for r, a in rs.items()],
                        }
                        for p, rs in principals.items()
                    ],
                }
            )
        if cases:
            out["testCases"] = cases
        if self.description:
            out["description"] = self.description
        if self.skip_reason:
            out["skipReason"] = self.skip_reason
        if self.error:
            out["error"] = self.error
        return out


@dataclass(slots=True)
class TestRun:
    """The results of all suites found under a directory."""

    __test__ = False  # not a pytest class

    suites: list[SuiteResult]

    def counts(self) -> dict[str, int]:
        total = dict.fromkeys(_ORDER, 0)
        for s in self.suites:
            for k, v in s.counts().items():
                total[k] += v
        return total

    @property
    def tests(self) -> int:
        """Number of test tables run or skipped (Cerbos counts checks; see `counts`)."""
        return sum(len(s.tests) for s in self.suites)

    @property
    def ok(self) -> bool:
        c = self.counts()
        return not c[FAILED] and not c[ERRORED] and not any(s.error for s in self.suites)

    def to_json(self) -> dict[str, Any]:
        """Cerbos `TestResults` (`cerbos compile --output=json`)."""
        errored = any(s.error for s in self.suites)
        return {
            "suites": [s.to_json() for s in self.suites],
            "summary": _summary(self.counts(), errored),
        }

    def failures(self) -> Iterable[tuple[SuiteResult, ActionOutcome]]:
        for s in self.suites:
            for o in s.outcomes:
                if o.result in (FAILED, ERRORED):
                    yield s, o


def _overall(counts: Mapping[str, int], errored: bool) -> str:
    if errored or counts.get(ERRORED):
        return ERRORED
    if counts.get(FAILED):
        return FAILED
    if counts.get(PASSED):
        return PASSED
    if counts.get(SKIPPED):
        return SKIPPED
    return PASSED


def _summary(counts: Mapping[str, int], errored: bool) -> dict[str, Any]:
    return {
        "overallResult": _overall(counts, errored),
        "testsCount": sum(counts.values()),
        "resultCounts": [{"result": k, "count": counts[k]} for k in _ORDER if counts.get(k)],
    }


# -- discovery and fixtures ---------------------------------------------------------------------


def discover_suites(root: str | Path) -> list[Path]:
    """`*_test.{yaml,yml,json}` files under `root` (not in hidden directories), sorted."""
    base = Path(root)
    found = []
    for path in base.rglob("*"):
        rel = path.relative_to(base).parts
        if any(p.startswith(".") for p in rel) or not path.is_file():
            continue
        name = path.name.lower()
        if name.endswith(_SUFFIXES) and name.rsplit(".", 1)[0].endswith("_test"):
            found.append(path)
    return sorted(found)


def _load(path: Path) -> Any:
    """One document, read as Cerbos reads it (YAML 1.2 scalars, duplicate keys refused)."""
    raw = path.read_bytes()
    if path.suffix.lower() == ".json":
        return load_json(raw)
    docs = [d for d in load_yaml_documents(raw) if d is not None]
    if len(docs) > 1:
        raise ValueError("more than one YAML document detected")
    return docs[0] if docs else None


def _strict(doc: Any, message: str) -> dict[str, Any]:
    """The document checked against its Cerbos message (`docspec`), as Cerbos loads it: an
    unknown key or a wrong type is an error, never ignored."""
    checked, problems = check_document(doc, message)
    if checked is None:
        raise SuiteError("\n".join(f"{p}: {m}" if p else m for p, m in problems))
    return checked


_FIXTURE_MESSAGES = {
    "principals": "PrincipalFixtures",
    "resources": "ResourceFixtures",
    "auxdata": "AuxDataFixtures",
}


def _testdata(suite_dir: Path, name: str) -> dict[str, Any]:
    for suffix in _SUFFIXES:
        path = suite_dir / "testdata" / f"{name}{suffix}"
        if path.is_file():
            try:
                data = _load(path)
                return {} if data is None else _strict(data, _FIXTURE_MESSAGES[name])
            except (yaml.YAMLError, ValueError) as exc:
                where = (suite_dir / "testdata").as_posix()
                raise SuiteError(
                    f"failed to load test fixtures from {where}: failed to load {name}:\n{exc}"
                ) from None
    return {}


@dataclass(slots=True)
class _Fixtures:
    principals: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, Any]]
    aux_data: dict[str, dict[str, Any]]
    principal_groups: dict[str, list[str]]
    resource_groups: dict[str, list[str]]


def _section(*sources: Mapping[str, Any], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for src in sources:
        value = src.get(key) or {}
        if not isinstance(value, dict):
            raise SuiteError(f"{key} must be a map of name to definition")
        out.update(value)
    return out


def _groups(raw: Mapping[str, Any], member_key: str) -> dict[str, list[str]]:
    out = {}
    for name, group in raw.items():
        members = group.get(member_key) if isinstance(group, dict) else None
        if not isinstance(members, list):
            raise SuiteError(f"group {name!r} must list its {member_key}")
        out[name] = [str(m) for m in members]
    return out


def _fixtures(suite_dir: Path, suite: Mapping[str, Any]) -> _Fixtures:
    pdata = _testdata(suite_dir, "principals")
    rdata = _testdata(suite_dir, "resources")
    adata = _testdata(suite_dir, "auxdata")
    return _Fixtures(
        principals=_section(pdata, suite, key="principals"),
        resources=_section(rdata, suite, key="resources"),
        aux_data=_section(adata, suite, key="auxData"),
        principal_groups=_groups(_section(pdata, suite, key="principalGroups"), "principals"),
        resource_groups=_groups(_section(rdata, suite, key="resourceGroups"), "resources"),
    )


def _names(
    entry: Mapping[str, Any], one: str, many: str, groups_key: str, groups: Any
) -> list[str]:
    """Fixture names of `one` + `many` + members of `groups_key`, de-duplicated in order."""
    out: list[str] = []
    single = entry.get(one)
    if single:
        out.append(str(single))
    out.extend(str(n) for n in entry.get(many) or ())
    for g in entry.get(groups_key) or ():
        if g not in groups:
            raise SuiteError(f"{groups_key[:-1]} {g!r} is not defined")
        out.extend(groups[g])
    return list(dict.fromkeys(out))


# -- running -----------------------------------------------------------------------------------


def _options(suite: Mapping[str, Any], test: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(suite.get("options") or {})
    merged.update(test.get("options") or {})
    return merged


def _same(a: Any, b: Any) -> bool:
    """JSON value equality with numbers compared by value (YAML `1` equals CEL `1.0`) but
    booleans never equal to numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _actual_outputs(result: Any, action: str) -> list[dict[str, Any]]:
    out = []
    for entry in getattr(result, "outputs", None) or ():
        get = entry.get if isinstance(entry, Mapping) else lambda k, e=entry: getattr(e, k, None)
        if get("action") == action:
            out.append({"src": get("src"), "val": to_json_value(get("val"))})
    return out


def _check_outputs(
    expected: list[dict[str, Any]], actual: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    failures = []
    for exp in expected:
        src = exp.get("src")
        want = to_json_value(exp.get("val"))
        found = [a for a in actual if a["src"] == src]
        if not found:
            failures.append({"src": src, "missing": {"expected": want}})
        elif not any(_same(a["val"], want) for a in found):
            failures.append(
                {"src": src, "mismatched": {"expected": want, "actual": found[0]["val"]}}
            )
    return failures


class _Runner:
    def __init__(self, factory: EngineFactory, pattern: re.Pattern[str] | None) -> None:
        self.factory = factory
        self.pattern = pattern

    def suite(self, path: Path, rel: str) -> SuiteResult:
        try:
            raw = _strict(_load(path), "TestSuite")
        except (yaml.YAMLError, ValueError, OSError) as exc:
            # Cerbos names a suite it cannot load "Unknown".
            return SuiteResult(rel, "Unknown", error=f"failed to load test suite:\n{exc}")
        result = SuiteResult(
            rel, str(raw.get("name") or path.stem), str(raw.get("description") or "")
        )
        if raw.get("skip"):
            result.skipped = True
            result.skip_reason = str(raw.get("skipReason") or "")
        try:
            fixtures = _fixtures(path.parent, raw)
        except SuiteError as exc:
            result.error = str(exc)
            return result
        for i, test in enumerate(raw["tests"]):
            if not isinstance(test, dict):
                result.error = f"tests[{i}] is not a map"
                return result
            name = str(test.get("name") or f"tests[{i}]")
            if self.pattern is not None and not self.pattern.search(name):
                continue
            result.tests.append(name)
            result.outcomes.extend(self.test(raw, test, name, fixtures, result))
        return result

    def test(
        self,
        suite: Mapping[str, Any],
        test: Mapping[str, Any],
        name: str,
        fx: _Fixtures,
        sres: SuiteResult,
    ) -> list[ActionOutcome]:
        inp = test.get("input") or {}
        try:
            principals = _names(inp, "", "principals", "principalGroups", fx.principal_groups)
            resources = _names(inp, "", "resources", "resourceGroups", fx.resource_groups)
            actions = [str(a) for a in inp.get("actions") or ()]
        except SuiteError as exc:
            return [ActionOutcome(name, "", "", "", ERRORED, error=str(exc))]
        combos = [(p, r, a) for p in principals for r in resources for a in actions]
        if not combos:
            return [ActionOutcome(name, "", "", "", ERRORED, error="input has no checks")]
        skip = sres.skip_reason if sres.skipped else None
        if test.get("skip"):
            skip = str(test.get("skipReason") or "")
        if skip is not None:
            return [ActionOutcome(name, p, r, a, SKIPPED, skip_reason=skip) for p, r, a in combos]
        try:
            expected, want_outputs = self._expected(test, fx, set(actions))
            opts = _options(suite, test)
            now = parse_time(opts["now"]) if opts.get("now") else None
            engine_opts = {
                ENGINE_OPTION_NAMES[k]: v for k, v in opts.items() if k in ENGINE_OPTION_NAMES
            }
            unknown = set(opts) - set(ENGINE_OPTION_NAMES) - {"now"}
            if unknown:
                raise SuiteError(f"unknown option(s): {', '.join(sorted(unknown))}")
            engine = self.factory(engine_opts)
            aux = None
            if inp.get("auxData"):
                key = str(inp["auxData"])
                if key not in fx.aux_data:
                    raise SuiteError(f"auxData {key!r} is not defined")
                aux = fx.aux_data[key]
        except (SuiteError, UnsupportedOption, ValueError, TypeError) as exc:
            return [ActionOutcome(name, p, r, a, ERRORED, error=str(exc)) for p, r, a in combos]
        except PolicyCompileError as exc:
            msg = f"policies do not compile with these options: {exc}"
            return [ActionOutcome(name, p, r, a, ERRORED, error=msg) for p, r, a in combos]
        out: list[ActionOutcome] = []
        for p in principals:
            for r in resources:
                out.extend(
                    self._pair(engine, name, fx, p, r, actions, aux, now, expected, want_outputs)
                )
        return out

    def _expected(
        self, test: Mapping[str, Any], fx: _Fixtures, actions: set[str]
    ) -> tuple[dict[tuple[str, str, str], str], dict[tuple[str, str, str], list[dict[str, Any]]]]:
        effects: dict[tuple[str, str, str], str] = {}
        outputs: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for i, exp in enumerate(test.get("expected") or ()):
            if not isinstance(exp, dict):
                raise SuiteError(f"expected[{i}] is not a map")
            ps = _names(exp, "principal", "principals", "principalGroups", fx.principal_groups)
            rs = _names(exp, "resource", "resources", "resourceGroups", fx.resource_groups)
            if not ps or not rs:
                raise SuiteError(f"expected[{i}] names no principal or no resource")
            acts = exp.get("actions") or {}
            for a in list(acts) + [o.get("action") for o in exp.get("outputs") or ()]:
                if a not in actions:
                    raise SuiteError(f"expected[{i}] names action {a!r}, which is not an input")
            for p in ps:
                for r in rs:
                    for a, effect in acts.items():
                        effects[(p, r, a)] = str(effect)
                    for o in exp.get("outputs") or ():
                        outputs.setdefault((p, r, o["action"]), []).extend(o.get("expected") or ())
        return effects, outputs

    def _pair(
        self,
        engine: PolicyEngine,
        test: str,
        fx: _Fixtures,
        p: str,
        r: str,
        actions: list[str],
        aux: Mapping[str, Any] | None,
        now: dt.datetime | None,
        expected: Mapping[tuple[str, str, str], str],
        want_outputs: Mapping[tuple[str, str, str], list[dict[str, Any]]],
    ) -> list[ActionOutcome]:
        missing = []
        if p not in fx.principals:
            missing.append(f"principal {p!r}")
        if r not in fx.resources:
            missing.append(f"resource {r!r}")
        if missing:
            msg = " and ".join(missing) + " not defined"
            return [ActionOutcome(test, p, r, a, ERRORED, error=msg) for a in actions]
        try:
            result = engine.check(fx.principals[p], fx.resources[r], actions, aux_data=aux, now=now)
        except Exception as exc:  # an engine bug must not stop the other tests
            msg = f"check failed: {type(exc).__name__}: {exc}"
            return [ActionOutcome(test, p, r, a, ERRORED, error=msg) for a in actions]
        out = []
        supports_outputs = hasattr(result, "outputs")
        for a in actions:
            ar = result.actions[a]
            want = expected.get((p, r, a), EFFECT_DENY)
            o = ActionOutcome(test, p, r, a, PASSED, want, ar.effect, ar.policy, ar.rule)
            o.eval_errors = list(result.errors)
            o.outputs = _actual_outputs(result, a)
            wanted = want_outputs.get((p, r, a))
            if wanted and not supports_outputs:
                o.result = ERRORED
                o.error = "expected outputs, but this policy engine does not produce outputs yet"
            else:
                if wanted:
                    o.output_failures = _check_outputs(wanted, o.outputs)
                if ar.effect != want or o.output_failures:
                    o.result = FAILED
            out.append(o)
        return out


class EngineCache:
    """Builds one engine per distinct set of options (compiling is the slow part) for a
    policy directory; `base` options (from the command line) apply under the suite's."""

    def __init__(self, directory: str | Path, **base: Any) -> None:
        self.directory = Path(directory)
        self.base = {k: v for k, v in base.items() if v is not None}
        self._engines: dict[str, PolicyEngine] = {}

    def seed(self, engine: PolicyEngine) -> None:
        """Reuse an engine already compiled with the base options (``vigil policy compile``)."""
        self._engines[json.dumps(self.base, sort_keys=True, default=str)] = engine

    def __call__(self, options: Mapping[str, Any]) -> PolicyEngine:
        merged = {**self.base, **options}
        key = json.dumps(merged, sort_keys=True, default=str)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = build_engine(self.directory, **merged)
        return engine


def run_suites(
    root: str | Path,
    factory: EngineFactory | None = None,
    *,
    run: str | None = None,
    paths: list[Path] | None = None,
) -> TestRun:
    """Run every suite under `root` (or `paths`); `run` keeps only tests whose name matches
    the regular expression (others are not run and not counted)."""
    base = Path(root)
    engine_factory = factory if factory is not None else EngineCache(base)
    pattern = re.compile(run) if run else None
    runner = _Runner(engine_factory, pattern)
    suites = []
    for path in paths if paths is not None else discover_suites(base):
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            rel = str(path)
        result = runner.suite(path, rel)
        if pattern is not None and not result.tests and result.error is None:
            continue  # nothing selected in this suite
        suites.append(result)
    return TestRun(suites)


def format_human(run: TestRun, *, verbose: bool = False) -> str:
    """A short report: one line per suite, then each failure with expected vs actual."""
    lines = ["Test results"]
    for s in run.suites:
        c = s.counts()
        parts = [f"{c[k]} {label}" for k, label in _LABELS if c[k]]
        status = ", ".join(parts) if parts else "no tests"
        lines.append(f"  {s.name} ({s.file}): {status}")
        if s.error:
            lines.append(f"    ERROR {s.error}")
    failures = list(run.failures())
    if failures:
        lines.append("")
        lines.append("Failures")
    for s, o in failures:
        where = f"{s.name} > {o.test}"
        if o.result == ERRORED:
            who = "/".join(x for x in (o.principal, o.resource, o.action) if x)
            lines.append(f"  ERROR {where}" + (f" > {who}" if who else "") + f": {o.error}")
            continue
        lines.append(
            f"  FAIL  {where} > principal {o.principal}, resource {o.resource}, action {o.action}"
        )
        if o.expected != o.actual:
            why = f" (policy {cerbos_policy_key(o.policy or '')}" + (
                f", rule {o.rule})" if o.rule else ", no rule matched)"
            )
            lines.append(f"        expected {o.expected}, got {o.actual}{why}")
        for f in o.output_failures:
            if "missing" in f:
                lines.append(
                    f"        output {f['src']}: expected {json.dumps(f['missing']['expected'])}, "
                    "none produced"
                )
            else:
                m = f["mismatched"]
                lines.append(
                    f"        output {f['src']}: expected {json.dumps(m['expected'])}, "
                    f"got {json.dumps(m['actual'])}"
                )
        if verbose:
            for e in o.eval_errors:
                lines.append(f"        evaluation error: {e}")
    c = run.counts()
    total = sum(c.values())
    lines.append("")
    lines.append(
        f"{len(run.suites)} suite(s), {run.tests} test(s), {total} check(s): "
        f"{c[PASSED]} passed, {c[FAILED]} failed, {c[SKIPPED]} skipped, {c[ERRORED]} errored"
        + ("" if run.ok else "  [FAILED]")
    )
    return "\n".join(lines)


_LABELS = ((PASSED, "OK"), (FAILED, "FAILED"), (SKIPPED, "SKIPPED"), (ERRORED, "ERRORED"))

__all__ = [
    "ActionOutcome",
    "EngineCache",
    "SuiteError",
    "SuiteResult",
    "TestRun",
    "discover_suites",
    "format_human",
    "run_suites",
]
