"""Strict parsing: a misspelled key, a wrong type or an invalid file is a compile error with file
and path, never a silent change of meaning (docs/policies.md, "Strict parsing").

The mutation test changes every key of every policy document of the project's bundles (policies/
and the test bundles): misspell it, drop it, give it a value of the wrong type. A misspelled field
name and a value of the wrong type are always refused with an error naming the file; a
misspelled user-chosen name (a variable, a constant) is refused or changes no decision; dropping
a required field is refused (dropping an optional one, e.g. a condition, is a legitimate edit
that stock Cerbos accepts too: `test_mutations_refused_like_stock_cerbos`)."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.policy import PolicyCompileError, PolicyEngine
from streams.policy.docspec import MESSAGE, MESSAGES, VALUE, Field
from streams.policy.loader import bundle_digest, load_directory
from streams.policy.testsuite import discover_suites, run_suites
from streams.policy.yamlload import load_yaml_documents

from .conftest import POLICIES, REPO

HEADER = "apiVersion: api.cerbos.dev/v1\n"
DOC = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  rules:
    - name: owner-only
      actions: ["read"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: R.attr.owner == P.id
"""

BUNDLES = [
    POLICIES,
    REPO / "tests/policy/bundles/extended",
    REPO / "tests/policy/bundles/functions",
    REPO / "tests/policy_tools/data/album",
    REPO / "tests/policy_tools/data/leave_request",
    REPO / "tests/policy_tools/data/widget_outputs",
]


def _errors(root: Path) -> list[str]:
    try:
        PolicyEngine.from_directory(root)
    except PolicyCompileError as exc:
        return [str(e) for e in exc.errors]
    return []


def _check(engine: PolicyEngine, owner: str = "alice") -> bool:
    res = engine.check(
        {"id": "alice", "roles": ["user"]},
        {"kind": "doc", "id": "1", "attr": {"owner": owner}},
        ["read"],
    )
    return res.allowed("read")


# --- the finding of issue 7: each of these compiled and changed the meaning before ------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("condition:", "condtion:", "resourcePolicy.rules[0].condtion"),
        ("effect:", "efect:", "resourcePolicy.rules[0].efect"),
        ("  rules:", "  schemass: {}\n  rules:", "resourcePolicy.schemass"),
        ("match:", "mtch:", "resourcePolicy.rules[0].condition.mtch"),
        ("expr:", "exp:", "resourcePolicy.rules[0].condition.match.exp"),
        ("resourcePolicy:", "resourcePolcy:", "resourcePolcy"),
    ],
)
def test_misspelled_key_is_a_compile_error(
    make_bundle: Callable[[dict[str, str]], Path], old: str, new: str, path: str
) -> None:
    assert _check(PolicyEngine.from_directory(make_bundle({"doc.yaml": DOC})), owner="alice")
    root = make_bundle({"doc.yaml": DOC.replace(old, new, 1)})
    errors = _errors(root)
    assert f'doc.yaml: {path}: unknown field "{path.rsplit(".", 1)[-1]}"' in errors, errors


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        ('actions: ["read"]', "actions: read", "rules[0].actions", "expected sequence got String"),
        ('roles: ["user"]', "roles:", "rules[0].roles", "expected sequence got Null"),
        ("effect: EFFECT_ALLOW", "effect: [EFFECT_ALLOW]", "rules[0].effect", "invalid enum value"),
        ("effect: EFFECT_ALLOW", "effect: ALLOW", "rules[0].effect", "invalid enum value 'ALLOW'"),
        ("version: default", "version: 1.5", "version", "expected string value got Float"),
        ("version: default", "version: null", "version", "value is required"),
        (
            "condition:",
            "condition: x\n      c:",
            "rules[0].condition",
            "expected object got String",
        ),
        (
            "expr: R",
            "expr: [R]\n          x: R",
            "rules[0].condition.match.expr",
            "expected string",
        ),
    ],
)
def test_wrong_type_is_a_compile_error(
    make_bundle: Callable[[dict[str, str]], Path], old: str, new: str, path: str, message: str
) -> None:
    root = make_bundle({"doc.yaml": DOC.replace(old, new, 1)})
    errors = _errors(root)
    assert any(e.startswith(f"doc.yaml: resourcePolicy.{path}: {message}") for e in errors), errors


def test_cerbos_coercions_are_honoured(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    """What Cerbos accepts, Vigil accepts with the same meaning: proto (snake_case) key names,
    integers and booleans in string fields, enum numbers, YAML 1.2 scalars (`on` is a string)."""
    text = (
        DOC.replace("version: default", "version: 1")
        .replace("effect: EFFECT_ALLOW", "effect: 1")
        .replace('roles: ["user"]', "roles: [user, on]")
        .replace("  rules:", "  scope_permissions: SCOPE_PERMISSIONS_OVERRIDE_PARENT\n  rules:")
    )
    engine = PolicyEngine.from_directory(make_bundle({"doc.yaml": text}))
    assert engine.policy_keys == ["resource.doc.v1"]
    for roles, allowed in ((["on"], True), (["true"], False)):
        res = engine.check(
            {"id": "alice", "roles": roles},
            {"kind": "doc", "id": "1", "policyVersion": "1", "attr": {"owner": "alice"}},
            ["read"],
        )
        assert res.allowed("read") is allowed
    both = DOC.replace("  rules:", "  importDerivedRoles: []\n  import_derived_roles: []\n  rules:")
    errors = _errors(make_bundle({"doc.yaml": both}))
    assert any("resourcePolicy.import_derived_roles: duplicate field" in e for e in errors)


def test_loader_issue_means_no_engine(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    """The mutation test below checks refusals with `load_directory` alone (fast); this is why
    that is enough: every loader issue fails `PolicyEngine.from_directory`."""
    root = make_bundle({"doc.yaml": DOC.replace("condition:", "condtion:")})
    assert load_directory(root).issues
    with pytest.raises(PolicyCompileError):
        PolicyEngine.from_directory(root)


def test_deprecated_top_level_variables(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    """The top-level `variables:` map (deprecated) is honoured, as in Cerbos: before it was
    ignored, so `V.is_owner` was undefined."""
    text = HEADER + "variables:\n  is_owner: R.attr.owner == P.id\n" + DOC.replace(HEADER, "", 1)
    text = text.replace("expr: R.attr.owner == P.id", "expr: V.is_owner")
    engine = PolicyEngine.from_directory(make_bundle({"doc.yaml": text}))
    assert _check(engine, owner="alice") and not _check(engine, owner="bob")
    clash = text.replace("  rules:", "  variables:\n    local:\n      is_owner: 'true'\n  rules:")
    errors = _errors(make_bundle({"doc.yaml": clash}))
    assert any(
        "doc.yaml: variables.is_owner: variable 'is_owner' has multiple" in e for e in errors
    )
    export = (
        HEADER + "variables: {a: 'true'}\nexportVariables: {name: ev, definitions: {b: 'true'}}\n"
    )
    errors = _errors(make_bundle({"doc.yaml": DOC, "ev.yaml": export}))
    assert any("ev.yaml: variables: exportVariables policies do not support" in e for e in errors)


def test_principal_policy_duplicates(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    pp = HEADER + (
        "principalPolicy:\n  principal: alice\n  version: default\n  rules:\n"
        "    - resource: doc\n      actions: [{action: read, effect: EFFECT_ALLOW, name: a}]\n"
        "    - resource: doc\n      actions: [{action: write, effect: EFFECT_ALLOW, name: a},"
        " {action: list, effect: EFFECT_ALLOW, name: a}]\n"
    )
    errors = _errors(make_bundle({"pp.yaml": pp}))
    assert "pp.yaml: principalPolicy.rules[1]: duplicate resource 'doc' (also at " in errors[0]
    assert any("rules[1].actions[1].name: duplicate action rule name 'a'" in e for e in errors)


# --- the mutation test ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPath:
    """A key of a document: where it is (keys and indexes) and what it holds."""

    steps: tuple[str | int, ...]
    field: Field | None  # None: a key of a map (a user-chosen name, e.g. a variable)


def _keys(value: Any, message: str, steps: tuple[str | int, ...]) -> Iterator[KeyPath]:
    """Every key of a message value, recursively, except inside `google.protobuf.Value`s
    (constants and their contents are data, not keys)."""
    spec = MESSAGES[message]
    for key, item in value.items():
        field = spec.fields.get(key)
        if field is None:
            continue
        here = (*steps, key)
        yield KeyPath(here, field)
        if field.kind == VALUE:
            continue
        nested = field.kind == MESSAGE
        if field.map:
            for name, sub in item.items():
                yield KeyPath((*here, name), None)
                if nested:
                    yield from _keys(sub, field.ref, (*here, name))
        elif field.repeated and nested:
            for i, sub in enumerate(item):
                yield from _keys(sub, field.ref, (*here, i))
        elif nested:
            yield from _keys(item, field.ref, here)


def _parent(doc: Any, steps: tuple[str | int, ...]) -> Any:
    for step in steps[:-1]:
        doc = doc[step]
    return doc


def _misspell(key: str) -> str:
    return key[:1] + "x" + key[1:]


def _wrong_type(field: Field) -> Any:
    """A value Cerbos refuses for this field (None: every value is valid, e.g. constants)."""
    if field.kind == VALUE:
        return None
    if field.repeated or field.map or field.kind == MESSAGE:
        return "x"
    return ["x"]


#: Key paths mutated per file: all of them up to this many, else a sample with a fixed seed (the
#: `functions` bundle has 125 rules of the same shape).
KEYS_PER_FILE = 150


def _mutations(doc: dict[str, Any]) -> Iterator[tuple[str, KeyPath, dict[str, Any], bool]]:
    """(kind, key path, mutated document, must be refused)."""
    keys = list(_keys(doc, "Policy", ()))
    if len(keys) > KEYS_PER_FILE:
        keys = random.Random(7).sample(keys, KEYS_PER_FILE)
    for kp in keys:
        key = kp.steps[-1]
        assert isinstance(key, str)
        renamed = copy.deepcopy(doc)
        parent = _parent(renamed, kp.steps)
        parent[_misspell(key)] = parent.pop(key)
        yield "misspell", kp, renamed, kp.field is not None
        dropped = copy.deepcopy(doc)
        del _parent(dropped, kp.steps)[key]
        yield "drop", kp, dropped, kp.field is not None and kp.field.required
        if kp.field is not None:
            wrong = _wrong_type(kp.field)
            if wrong is not None:
                retyped = copy.deepcopy(doc)
                _parent(retyped, kp.steps)[key] = wrong
                yield "wrong-type", kp, retyped, True


def _requests(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any], list[str]]]:
    """Checks over every kind, version, scope, role, principal id and action named in the
    documents (for bundles without test suites)."""
    kinds, roles, ids, actions = set(), {"nobody"}, {"nobody"}, {"other"}
    for doc in docs:
        for body in doc.values():
            if not isinstance(body, dict):
                continue
            if "resource" in body:
                kinds.add((body["resource"], body.get("version", "default"), body.get("scope", "")))
            ids.add(body.get("principal", "nobody"))
            listed = [body.get("rules"), body.get("definitions")]
            for rule in [r for rules in listed if isinstance(rules, list) for r in rules]:
                roles.update(rule.get("roles", []) + rule.get("parentRoles", []))
                roles.update(rule.get("derivedRoles", []))
                actions.update(a for a in rule.get("actions", []) if isinstance(a, str))
                actions.update(rule.get("allowActions", []))
                kinds.update((r["resource"], "default", "") for r in [rule] if "resource" in rule)
                actions.update(a["action"] for a in rule.get("actions", []) if isinstance(a, dict))
    out = []
    for kind, version, scope in sorted(kinds):
        for role in sorted(roles):
            for pid in sorted(ids):
                principal = {"id": pid, "roles": [role], "attr": {}}
                resource = {"kind": kind, "id": "r1", "policyVersion": version, "scope": scope}
                out.append((principal, resource, sorted(a.replace("*", "x") for a in actions)))
    return out


def _decisions(root: Path, requests: list[Any]) -> list[Any]:
    """Every effect the bundle decides: its test suites' checks, then the generated requests."""
    out: list[Any] = []
    if discover_suites(root):
        for suite in run_suites(root).suites:
            out.append(suite.error)
            out.extend(
                (o.test, o.principal, o.resource, o.action, o.actual) for o in suite.outcomes
            )
    engine = PolicyEngine.from_directory(root)
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    for principal, resource, actions in requests:
        res = engine.check(principal, resource, actions, now=now)
        out.append(sorted((a, r.effect) for a, r in res.actions.items()))
    return out


#: Accepted misspellings (of user-chosen names: variables, constants, annotations) whose
#: decisions are compared, per bundle (each costs a full compile and test run); chosen with a
#: fixed seed. Refusals are checked for every mutation.
ACCEPTED_SAMPLE = 8


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_every_key_mutation_is_refused_or_changes_no_decision(bundle: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(bundle, store)
    loaded = load_directory(store)
    assert not loaded.issues
    requests = _requests([f.document for f in loaded.files])
    baseline = _decisions(store, requests)
    single = tmp_path / "single"
    single.mkdir()
    accepted: list[tuple[str, str, str]] = []
    counts = {"refused": 0, "accepted": 0}
    for lf in loaded.files:
        raw = list(load_yaml_documents(lf.raw))[0] if not lf.rel_path.endswith(".json") else None
        original = raw if raw is not None else json.loads(lf.raw)
        for kind, kp, mutated, must_refuse in _mutations(original):
            # The loader checks each file on its own: refusals are decided by this file alone.
            (single / "p.json").write_text(json.dumps(mutated))
            issues = load_directory(single).issues
            label = f"{lf.rel_path}: {kind} {'.'.join(map(str, kp.steps))}"
            if issues:
                assert all(i.file == "p.json" for i in issues), label
                counts["refused"] += 1
                continue
            assert not must_refuse, f"accepted: {label}"
            counts["accepted"] += 1
            if kind == "misspell":  # a renamed variable, constant, annotation, ...
                accepted.append((lf.rel_path, label, json.dumps(mutated)))
            # else: an optional key dropped (a condition, a rule name): a legitimate edit that
            # Cerbos accepts too (see test_mutations_refused_like_stock_cerbos).
    assert counts["refused"] > counts["accepted"]
    for rel, label, text in random.Random(7).sample(accepted, min(ACCEPTED_SAMPLE, len(accepted))):
        target = store / rel
        original_bytes = target.read_bytes()
        target.write_text(text)
        try:
            errors = _errors(store)
            if not errors:
                assert _decisions(store, requests) == baseline, f"meaning changed: {label}"
        finally:
            target.write_bytes(original_bytes)


# --- the differential twin: the same broken and valid stores through stock `cerbos compile` -----

OTHER = DOC.replace("resource: doc", "resource: other")

#: Stores of `doc.yaml` plus these files (`OTHER` is a second valid policy, changed).
_INVALID_FILES: list[tuple[str, dict[str, str]]] = [
    ("config next to policies", {"risk.yaml": "base:\n  reported: {LOW: 10}\n"}),
    ("wrong apiVersion", {"v2.yaml": OTHER.replace("cerbos.dev/v1", "cerbos.dev/v2")}),
    ("no apiVersion", {"nov.yaml": OTHER.replace("apiVersion: api.cerbos.dev/v1\n", "")}),
    ("a list", {"list.yaml": "- a\n"}),
    ("two documents", {"two.yaml": OTHER + "---\n" + OTHER.replace("other", "doc2")}),
    ("duplicate key", {"dup.yaml": OTHER.replace("version: default", "version: a\n  version: b")}),
    ("nested _schemas", {"x/_schemas/s.json": "{}"}),
    ("empty file", {"empty.yaml": "# nothing\n"}),
    ("test data", {"x/testdata/y.yaml": "anything: 1\n"}),
    ("int version", {"v.yaml": OTHER.replace("version: default", "version: 7")}),
    ("float version", {"v.yaml": OTHER.replace("version: default", "version: 7.5")}),
    ("effect number", {"e.yaml": OTHER.replace("EFFECT_ALLOW", "2")}),
    ("null roles", {"r.yaml": OTHER.replace('roles: ["user"]', "roles:")}),
    ("bool disabled yes", {"d.yaml": "disabled: yes\n" + OTHER}),
    (
        "snake_case keys",
        {"s.yaml": OTHER.replace("  rules:", "  import_derived_roles: []\n  rules:")},
    ),
    (
        "derived role names",
        {
            "dr.yaml": HEADER + "derivedRoles: {name: _x, definitions: "
            "[{name: 1y, parentRoles: [a]}]}\n"
        },
    ),
    (
        "top-level variables",
        {"tv.yaml": HEADER + "variables: {a: 'true'}\n" + OTHER[len(HEADER) + 1 :]},
    ),
    (
        "top-level vars in export",
        {
            "ev.yaml": HEADER + "variables: {a: 'true'}\n"
            "exportVariables: {name: ev, definitions: {b: 'true'}}\n"
        },
    ),
]


def _stock_refused_files(binary: Path, store: Path) -> set[str] | None:
    """Files `cerbos compile --skip-tests` reports (None: the store compiles)."""
    import os
    import subprocess

    done = subprocess.run(
        [str(binary), "compile", "--skip-tests", "--output=json", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CERBOS_NO_TELEMETRY": "1"},
    )
    if done.returncode == 0:
        return None
    out = json.loads(done.stdout)
    lint = out.get("lintErrors") or {}
    files = {e["file"] for e in lint.get("load_failures", [])}
    files |= {e["file"] for e in (out.get("compileErrors") or {}).get("errors", [])}
    return files or {"?"}


def _vigil_refused_files(store: Path) -> set[str] | None:
    try:
        PolicyEngine.from_directory(store)
    except PolicyCompileError as exc:
        return {e.file for e in exc.errors}
    return None


def _differential_stores(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    for i, (name, files) in enumerate(_INVALID_FILES):
        store = tmp_path / f"invalid{i}"
        (store / "doc.yaml").parent.mkdir(parents=True)
        (store / "doc.yaml").write_text(DOC)
        for rel, text in files.items():
            (store / rel).parent.mkdir(parents=True, exist_ok=True)
            (store / rel).write_text(text)
        yield name, store
    rng = random.Random(11)
    for bundle in (
        POLICIES,
        REPO / "tests/policy/bundles/extended",
        REPO / "tests/policy_tools/data/album",
    ):
        loaded = load_directory(bundle)
        by_kind: dict[str, list[tuple[str, str, Any]]] = {}
        for lf in loaded.files:
            doc = list(load_yaml_documents(lf.raw))[0]
            for kind, kp, mutated, _ in _mutations(doc):
                kind = f"{kind}-{'required' if kp.field and kp.field.required else 'optional'}"
                kind += "-name" if kp.field is None else ""
                by_kind.setdefault(kind, []).append(
                    (lf.rel_path, ".".join(map(str, kp.steps)), mutated)
                )
        for kind, found in sorted(by_kind.items()):
            for rel, where, mutated in rng.sample(found, min(2, len(found))):
                store = tmp_path / f"m{rng.randrange(10**9)}"
                shutil.copytree(bundle, store)
                (store / rel).write_text(json.dumps(mutated))
                yield f"{bundle.name}/{rel}: {kind} {where}", store


def test_mutations_refused_like_stock_cerbos(tmp_path: Path) -> None:
    """Needs the stock Cerbos binary (fetched by test_differential's helper; CI installs it)."""
    from .test_differential import _cerbos_binary

    binary = _cerbos_binary()
    differ = []
    n = 0
    for label, store in _differential_stores(tmp_path):
        n += 1
        stock, vigil = _stock_refused_files(binary, store), _vigil_refused_files(store)
        if stock != vigil:
            differ.append(f"{label}: cerbos {stock}, vigil {vigil}")
    assert n > 30
    assert not differ, "\n".join(differ)


# --- `vigil policy push` and a worker's bundle switch use the same strict compiler ---------------


def _misspelled_policies(target: Path) -> Path:
    """policies/ with one `condition:` written `condtion:` (it compiled and passed every policy
    test before strict parsing, turning that rule into an unconditional one)."""
    shutil.copytree(POLICIES, target)
    doc = target / "document.yaml"
    doc.write_text(doc.read_text().replace("condition:", "condtion:", 1))
    return target


def test_push_refuses_a_misspelled_bundle(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    store = _misspelled_policies(tmp_path / "store")
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "policy", "push", str(store)],
        env={**os.environ, "VIGIL_BROKER": "127.0.0.1:9"},  # never reached
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "does not compile; nothing published" in proc.stderr
    assert "document.yaml: resourcePolicy.rules[" in proc.stderr
    assert 'unknown field "condtion"' in proc.stderr


async def test_worker_refuses_a_misspelled_bundle(tmp_path: Path) -> None:
    import asyncio

    from prometheus_client import REGISTRY

    from streams.bundles.bundle import Bundle
    from streams.bundles.watcher import BundleWatcher

    def rejected(source: str) -> float:
        value = REGISTRY.get_sample_value("vigil_policy_bundle_rejected_total", {"source": source})
        return value or 0.0

    store = tmp_path / "store"
    shutil.copytree(POLICIES, store)
    running = PolicyEngine.from_directory(store)
    watcher = BundleWatcher(
        bootstrap="127.0.0.1:9",  # the Kafka side is not started
        topic="bundles",
        policies_dir=store,
        workdir=tmp_path / "work",
        running_digest=running.digest,
        poll_seconds=0.02,
    )
    # A pushed bundle record with a misspelled key is refused.
    files = {f.rel_path: f.raw.decode() for f in load_directory(store).files}
    files["document.yaml"] = files["document.yaml"].replace("condition:", "condtion:", 1)
    before = rejected("push")
    digest = bundle_digest([(rel, text.encode()) for rel, text in files.items()])
    record = Bundle(digest=digest, files=files).to_bytes()
    assert await watcher._compile_record(record) is None
    assert rejected("push") == before + 1
    # An edit of the watched directory with a misspelled key is refused; the running bundle stays.
    task = asyncio.create_task(watcher._watch_directory(store))
    try:
        before = rejected("directory")
        _misspelled_policies(tmp_path / "bad")
        (store / "document.yaml").write_text((tmp_path / "bad/document.yaml").read_text())
        for _ in range(500):
            if rejected("directory") > before:
                break
            await asyncio.sleep(0.02)
        assert rejected("directory") == before + 1
        assert watcher.poll() is None
        # A valid edit is then taken: the refusal above came from the misspelling.
        (store / "document.yaml").write_text((POLICIES / "document.yaml").read_text() + "# ok\n")
        for _ in range(500):
            ready = watcher.poll()
            if ready is not None:
                break
            await asyncio.sleep(0.02)
        assert ready is not None and ready[0] == "directory"
        assert ready[1].digest != running.digest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- test suites and fixtures are read as strictly -----------------------------------------------

SUITE = """
name: s
principals: {p: {id: p, roles: [user]}}
resources: {r: {kind: doc, id: r, attr: {owner: p}}}
tests:
  - name: t
    input: {principals: [p], resources: [r], actions: [read]}
    expected: [{principal: p, resource: r, actions: {read: EFFECT_ALLOW}}]
"""

#: (what, {file: text}): broken test suites and fixtures; a valid one first.
_SUITES: list[tuple[str, dict[str, str]]] = [
    ("valid", {}),
    ("suite key", {"tests/a_test.yaml": SUITE.replace("name: s", "name: s\ndescrption: x")}),
    ("test key", {"tests/a_test.yaml": SUITE.replace("    input:", "    skp: true\n    input:")}),
    (
        "principal key",
        {"tests/a_test.yaml": SUITE.replace("roles: [user]}", "roles: [user], atr: {}}")},
    ),
    ("effect", {"tests/a_test.yaml": SUITE.replace("read: EFFECT_ALLOW", "read: ALLOW")}),
    ("input", {"tests/a_test.yaml": SUITE.replace("principals: [p], ", "")}),
    ("fixture key", {"tests/testdata/principals.yaml": "principals: {}\nprincipls: {}\n"}),
    ("fixture type", {"tests/testdata/resources.yaml": "resources: []\n"}),
]


@pytest.mark.parametrize(("what", "files"), _SUITES, ids=[w for w, _ in _SUITES])
def test_broken_suites_are_errored(
    make_bundle: Callable[[dict[str, str]], Path], what: str, files: dict[str, str]
) -> None:
    root = make_bundle({"doc.yaml": DOC, "tests/a_test.yaml": SUITE, **files})
    (suite,) = run_suites(root).suites
    if what == "valid":
        assert suite.error is None and suite.overall == "RESULT_PASSED"
    else:
        assert suite.error and "failed to load test" in suite.error, suite.error
        assert suite.overall == "RESULT_ERRORED"


def test_broken_suites_are_errored_like_stock_cerbos(tmp_path: Path) -> None:
    """Needs the stock Cerbos binary (fetched by test_differential's helper; CI installs it)."""
    import os
    import subprocess

    from .test_differential import _cerbos_binary

    binary = _cerbos_binary()
    for i, (what, files) in enumerate(_SUITES):
        store = tmp_path / f"s{i}"
        for rel, text in {"doc.yaml": DOC, "tests/a_test.yaml": SUITE, **files}.items():
            (store / rel).parent.mkdir(parents=True, exist_ok=True)
            (store / rel).write_text(text)
        done = subprocess.run(
            [str(binary), "compile", "--output=json", str(store)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CERBOS_NO_TELEMETRY": "1"},
        )
        stock = json.loads(done.stdout)["suites"][0]
        ours = run_suites(store).to_json()["suites"][0]
        assert (ours["name"], ours["summary"]["overallResult"]) == (
            stock["name"],
            stock["summary"]["overallResult"],
        ), what
        assert ("error" in ours) == ("error" in stock), what


# --- request scope "." is the root scope (issue 7) -----------------------------------------------


PRINCIPAL_POLICY = HEADER + (
    "principalPolicy:\n  principal: alice\n  version: default\n  rules:\n"
    "    - resource: doc\n      actions: [{action: write, effect: EFFECT_ALLOW}]\n"
)


@pytest.mark.parametrize("with_principal_policy", [False, True], ids=["fast", "general"])
@pytest.mark.parametrize(("pscope", "rscope"), [("", "."), (".", ""), (".", "."), (None, None)])
def test_dot_scope_is_the_root_scope(
    make_bundle: Callable[[dict[str, str]], Path],
    with_principal_policy: bool,
    pscope: str | None,
    rscope: str | None,
) -> None:
    """Stock Cerbos 0.55 answers a principal or resource scope "." like the root scope ""
    (checked with `cerbos compile` on a suite; the general evaluator runs when a principal
    policy exists)."""
    files = {"doc.yaml": DOC}
    if with_principal_policy:
        files["alice.yaml"] = PRINCIPAL_POLICY
    engine = PolicyEngine.from_directory(make_bundle(files))
    principal: dict[str, Any] = {"id": "alice", "roles": ["user"]}
    resource: dict[str, Any] = {"kind": "doc", "id": "1", "attr": {"owner": "alice"}}
    if pscope is not None:
        principal["scope"] = pscope
    if rscope is not None:
        resource["scope"] = rscope
    res = engine.check(principal, resource, ["read", "write"])
    assert res.actions["read"].effect == "EFFECT_ALLOW"
    assert res.actions["read"].policy == "resource.doc.vdefault"
    assert res.allowed("write") is with_principal_policy


def test_dot_scope_like_stock_cerbos(tmp_path: Path) -> None:
    """Needs the stock Cerbos binary (fetched by test_differential's helper; CI installs it)."""
    import os
    import subprocess

    from .test_differential import _cerbos_binary

    suite = SUITE.replace("roles: [user]}", 'roles: [user], scope: "."}')
    suite = suite.replace("attr: {owner: p}}", 'attr: {owner: p}, scope: "."}')
    suite = suite.replace("actions: [read]}", "actions: [read, write]}")
    suite = suite.replace("read: EFFECT_ALLOW}", "read: EFFECT_ALLOW, write: EFFECT_ALLOW}")
    store = tmp_path / "store"
    for rel, text in {
        "doc.yaml": DOC.replace("P.id", '"p"'),
        "p.yaml": PRINCIPAL_POLICY.replace("alice", "p"),
        "tests/a_test.yaml": suite,
    }.items():
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        (store / rel).write_text(text)
    done = subprocess.run(
        [str(_cerbos_binary()), "compile", "--output=json", str(store)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CERBOS_NO_TELEMETRY": "1"},
    )
    assert done.returncode == 0, done.stdout
    assert run_suites(store).ok
