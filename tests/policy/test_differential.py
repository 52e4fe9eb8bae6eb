"""Differential test against the stock Cerbos PDP 0.55.0 (npm `@cerbos/cerbos-linux-x64`).

Starts `cerbos server` on the default bundle (Cerbos policy documents only: stock Cerbos rejects
non-policy YAML such as risk.yaml) and on the semantics bundle of test_semantics.py, sends a
generated set of requests, and compares effects, matched policies and effective derived roles.
The binary (pinned version and checksum) is cached under .venv/; when it cannot be obtained the
tests fail in CI and skip elsewhere (tests/external_tools.py).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.policy import PolicyEngine
from streams.policy.loader import load_directory
from tests.external_tools import cerbos_binary

from . import test_semantics as sem
from .conftest import POLICIES, principal


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_policies(src: Path, dst: Path) -> Path:
    """Only the files our loader treats as Cerbos policies (plus test suites for `compile`)."""
    for lf in load_directory(src).files:
        target = dst / lf.rel_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lf.raw)
    if (src / "tests").is_dir():
        shutil.copytree(src / "tests", dst / "tests")
    return dst


@contextlib.contextmanager
def _server(
    binary: Path,
    policy_dir: Path,
    tmp: Path,
    globals_: dict[str, Any],
    engine_conf: dict[str, Any] | None = None,
    args: Sequence[str] = (),
    aux_data: dict[str, Any] | None = None,
) -> Iterator[str]:
    """A stock PDP serving ``policy_dir``; ``args`` go to ``cerbos server`` (``--log-level``);
    ``aux_data`` is its ``auxData`` configuration block (JWT key sets)."""
    port = _free_port()
    conf = tmp / "cerbos.json"  # JSON is valid YAML
    conf.write_text(
        json.dumps(
            {
                "server": {
                    "httpListenAddr": f"127.0.0.1:{port}",
                    "grpcListenAddr": f"127.0.0.1:{_free_port()}",
                },
                "storage": {"driver": "disk", "disk": {"directory": str(policy_dir)}},
                "engine": {"globals": globals_, **(engine_conf or {})},
                "audit": {"enabled": False},
                **({"auxData": aux_data} if aux_data is not None else {}),
            }
        )
    )
    log = (tmp / "cerbos.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "server", f"--config={conf}", *args], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a loaded, shared machine starts it slowly
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_cerbos/health", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("cerbos server did not start:\n" + (tmp / "cerbos.log").read_text())
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _check(
    url: str, prin: dict[str, Any], resources: list[dict[str, Any]], actions: list[str]
) -> Any:
    body = {
        "requestId": "diff",
        "principal": prin,
        "resources": [{"resource": r, "actions": actions} for r in resources],
        "includeMeta": True,
    }
    req = urllib.request.Request(
        f"{url}/api/check/resources",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _compare(
    engine: PolicyEngine,
    url: str,
    principals: list[dict[str, Any]],
    resources: list[dict[str, Any]],
    actions: list[str],
) -> int:
    mismatches: list[str] = []
    n = 0
    for prin in principals:
        reply = _check(url, prin, resources, actions)
        for res, out in zip(resources, reply["results"], strict=True):
            ours = engine.check(prin, res, actions)
            meta = out.get("meta", {})
            for a in actions:
                n += 1
                theirs = (out["actions"][a], meta["actions"][a]["matchedPolicy"])
                mine = (ours.actions[a].effect, ours.actions[a].policy)
                if theirs != mine:
                    mismatches.append(
                        f"{prin['id']} {prin['roles']} {res} {a}: cerbos={theirs} vigil={mine}"
                    )
            if sorted(meta.get("effectiveDerivedRoles", [])) != ours.effective_derived_roles:
                mismatches.append(f"{prin['id']} {res}: derived roles differ")
    assert not mismatches, "\n".join(mismatches[:20])
    return n


def _default_principals() -> list[dict[str, Any]]:
    variations: list[dict[str, Any]] = [
        {},
        {"risk": {"level": "MEDIUM", "score": 60}},
        {"risk": {"level": "HIGH", "score": 95.5}},
        {"device": {"compliant": False, "status": "not-compliant"}},
        {"device": {"id": "", "compliant": False, "status": "unknown"}},
        {"identity": {"account_status": "disabled"}},
        {"identity": {"credential_compromised": True}},
        {"network": {"zone": "untrusted"}},
        {"network": {"zone": ""}},
        {"session": {"revoked": True}},
    ]
    roles = [("employee",), ("agent",), ("admin",), ("agent", "employee"), ("contractor",)]
    out = []
    for i, (r, v) in enumerate(itertools.product(roles, variations)):
        p = principal("alice" if i % 2 else "bob", r, **v)
        out.append(p)
    expired = principal("alice", ("employee",), expires_at="2001-01-01T00:00:00Z")
    live = principal("alice", ("employee",), expires_at="2999-01-01T00:00:00Z")
    no_signals = {"id": "alice", "roles": ["employee"], "attr": {}}
    return [*out, expired, live, no_signals]


def test_default_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    binary = cerbos_binary()
    bundle = _copy_policies(POLICIES, tmp_path / "policies")
    compiled = subprocess.run(
        [str(binary), "compile", str(bundle)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(POLICIES)
    resources = [
        {"kind": "document", "id": "d1", "attr": {"owner": "alice"}},
        {"kind": "document", "id": "d2", "attr": {"owner": "carol"}},
        {"kind": "document", "id": "d3", "attr": {}},
        {"kind": "tool", "id": "t1", "attr": {}},
        {"kind": "mailbox", "id": "m1", "attr": {}},
        {"kind": "unknown", "id": "u1", "attr": {}},
    ]
    actions = ["read", "write", "delete", "share", "invoke", "admin", "admin:reset", "zzz"]
    actions += ["send", "triage"]
    # the delegated principals of the mailbox suite (delegation chains, credential changes)
    suite = yaml.safe_load((POLICIES / "tests" / "mailbox_test.yaml").read_text())
    principals = [*_default_principals(), *suite["principals"].values()]
    with _server(binary, bundle, tmp_path, {}) as url:
        n = _compare(engine, url, principals, resources, actions)
    assert n > 1000


def test_semantics_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    binary = cerbos_binary()
    bundle = tmp_path / "bundle"
    for rel, text in {
        "dr.yaml": sem.DERIVED,
        "doc.yaml": sem.ROOT,
        "acme/doc.yaml": sem.SCOPED,
        "acme/hr.yml": sem.SCOPED2,
    }.items():
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text(text)
    globals_ = {"env": "test"}
    engine = PolicyEngine.from_directory(bundle, globals_=globals_)
    actions = sorted({c[4] for c in sem.CASES} | {"fn", "approve", "missing"})
    principals = [
        {"id": "u", "roles": list(r), "attr": attr}
        for r in (("a",), ("b",), ("b", "a"), ("q",), ("manager",))
        for attr in (sem.P_ATTR, {"score": 15, "tags": []}, {})
    ]
    resources = [
        {"kind": "doc", "id": "1", "attr": attr, "scope": scope}
        for attr in ({}, {"owner": "u"}, {"owner": "x"})
        for scope in ("", "acme", "acme.hr", "nope")
    ]
    with _server(binary, bundle, tmp_path, globals_) as url:
        n = _compare(engine, url, principals, resources, actions)
    assert n > 1000


EXTENDED = Path(__file__).parent / "bundles" / "extended"


def _compare_full(
    engine: PolicyEngine,
    url: str,
    principals: list[dict[str, Any]],
    resources: list[dict[str, Any]],
    actions: list[str],
) -> int:
    """Effects, matched policy and scope, derived roles and outputs (in order)."""
    mismatches: list[str] = []
    n = 0
    for prin in principals:
        reply = _check(url, prin, resources, actions)
        for res, out in zip(resources, reply["results"], strict=True):
            ours = engine.check(prin, res, actions)
            meta = out.get("meta", {})
            for a in actions:
                n += 1
                m = meta["actions"][a]
                theirs = (out["actions"][a], m["matchedPolicy"], m.get("matchedScope", ""))
                mine = (ours.actions[a].effect, ours.actions[a].policy, ours.actions[a].scope)
                if theirs != mine:
                    mismatches.append(
                        f"{prin['id']} {prin['roles']} {prin['attr']} {res} {a}: "
                        f"cerbos={theirs} vigil={mine}"
                    )
            if sorted(meta.get("effectiveDerivedRoles", [])) != ours.effective_derived_roles:
                mismatches.append(f"{prin['id']} {res}: derived roles differ")
            theirs_out = [(o["src"], o["action"], o.get("val")) for o in out.get("outputs", [])]
            mine_out = [(o.src, o.action, o.val) for o in ours.outputs]
            if theirs_out != mine_out:
                mismatches.append(
                    f"{prin['id']} {prin['roles']} {res}: outputs cerbos={theirs_out} "
                    f"vigil={mine_out}"
                )
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:25])
    return n


def _extended_requests() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    role_sets = [
        ["user"],
        ["manager"],
        ["viewer"],
        ["acme_user"],
        ["hr_viewer"],
        ["acme_user", "viewer"],
        ["admin", "manager"],
        ["nobody"],
    ]
    attrs = [
        {"dept": "acme", "level": 3},
        {"dept": "other", "level": 1},
        {"level": 5},
        {},
    ]
    principals = [
        {"id": pid, "roles": roles, "attr": attr, **({"scope": ps} if ps else {})}
        for pid in ("alice", "bob")
        for roles in role_sets
        for attr in attrs
        for ps in ("", "beta", "beta.x")
    ]
    resources = [
        {"kind": kind, "id": "r1", "attr": rattr, **({"scope": scope} if scope else {})}
        for kind in ("doc", "widget", "gadget")
        for rattr in (
            {"owner": "alice", "size": 5, "tag": "a"},
            {"owner": "bob", "size": 500, "tag": "z"},
            {},
        )
        for scope in ("", "acme", "acme.hr", "acme.fin")
    ]
    actions = ["read", "write", "delete", "approve", "share:link", "audit", "other"]
    return principals, resources, actions


def test_extended_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    """Principal and role policies, exported variables/constants, scope permissions,
    outputs and `disabled` policies."""
    binary = cerbos_binary()
    compiled = subprocess.run(
        [str(binary), "compile", str(EXTENDED)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(EXTENDED)
    principals, resources, actions = _extended_requests()
    with _server(binary, EXTENDED, tmp_path, {}) as url:
        n = _compare_full(engine, url, principals, resources, actions)
    assert n > 5000


def test_lenient_scope_search_matches_stock_cerbos(tmp_path: Path) -> None:
    """`lenient_scope_search=True` against Cerbos' `engine.lenientScopeSearch: true`, on the
    semantics bundle plus principal policies. (The stock PDP 0.55 answers lenient requests
    that meet a REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS scope nondeterministically, so the
    extended bundle is not used here.)"""
    binary = cerbos_binary()
    bundle = tmp_path / "bundle"
    for rel, text in {
        "dr.yaml": sem.DERIVED,
        "doc.yaml": sem.ROOT,
        "acme/doc.yaml": sem.SCOPED,
        "acme/hr.yml": sem.SCOPED2,
        "pp.yaml": (EXTENDED / "principal_alice.yaml").read_text(),
        "pp_acme.yaml": (EXTENDED / "principal_alice_beta.yaml").read_text(),
        "ev.yaml": (EXTENDED / "export_vars.yaml").read_text(),
    }.items():
        (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / rel).write_text(text)
    globals_ = {"env": "test"}
    engine = PolicyEngine.from_directory(bundle, globals_=globals_, lenient_scope_search=True)
    actions = sorted({c[4] for c in sem.CASES} | {"fn", "approve", "missing", "delete"})
    principals = [
        {"id": pid, "roles": list(r), "attr": attr, **({"scope": ps} if ps else {})}
        for pid in ("u", "alice")
        for r in (("a",), ("b", "a"), ("manager",))
        for attr in (sem.P_ATTR, {})
        for ps in ("", "beta.x")
    ]
    resources = [
        {"kind": "doc", "id": "1", "attr": attr, "scope": scope}
        for attr in ({}, {"owner": "u", "size": 500}, {"owner": "alice", "size": 1})
        for scope in ("", "acme", "acme.hr", "nope", "acme.hr.x.y", "acme.zzz")
    ]
    with _server(binary, bundle, tmp_path, globals_, {"lenientScopeSearch": True}) as url:
        n = _compare_full(engine, url, principals, resources, actions)
    assert n > 1000


FUNCTIONS = Path(__file__).parent / "bundles" / "functions"

_SCOPES: list[Any] = ["a.b", "a.b.c", "a", "", "a.c", "a.b.c.d", "x.y", "b.b", 7]
_SPIFFE_IDS = [
    "spiffe://example.org/svc/a",
    "spiffe://example.org",
    "spiffe://other.org/svc/a",
    "spiffe://Example.org/svc",
    "spiffe://example.org/svc/",
    "spiffe://example.org//svc",
    "spiffe://example.org/./svc",
    "spiffe://example.org/a b",
    "spiffe://example.org:80/svc",
    "SPIFFE://example.org/svc",
    "http://example.org/svc",
    "",
]


def _function_requests() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Requests for the `functions` bundle: valid, edge-case and malformed hierarchies and
    SPIFFE IDs, wrong types and missing attributes (errors must be errors in both)."""
    parts: list[Any] = [["a", "b"], [], ["a", 1], ["a"], "a.b"]
    paths = ["/svc/a", "a/b/c", "a/b", "", "/"]
    principals = []
    for i, scope in enumerate(_SCOPES):
        for j, sid in enumerate(_SPIFFE_IDS):
            if (i + j) % 3:
                continue
            attr: dict[str, Any] = {
                "scope": scope,
                "spiffe": sid,
                "parts": parts[(i + j) % len(parts)],
                "path": paths[(i * 3 + j) % len(paths)],
            }
            principals.append({"id": f"p{i}-{j}", "roles": ["user"], "attr": attr})
    principals.append({"id": "empty", "roles": ["user"], "attr": {}})
    principals.append({"id": "pv", "roles": ["user"], "attr": {}, "policyVersion": "default"})
    tds = ["example.org", "spiffe://example.org", "Example.org", "", "other.org", "ex/x"]
    allowed: list[list[Any]] = [
        ["spiffe://example.org/svc/a", "spiffe://example.org"],
        ["spiffe://other.org/svc/a"],
        [],
        ["spiffe://example.org/svc/a", "bad id"],
        ["spiffe://example.org/svc/a", 3],
    ]
    resources = []
    for k, scope in enumerate(_SCOPES):
        resources.append(
            {
                "kind": "fn",
                "id": f"r{k}",
                "attr": {
                    "scope": scope,
                    "td": tds[k % len(tds)],
                    "allowed": allowed[k % len(allowed)],
                    "path": paths[k % len(paths)],
                },
            }
        )
    resources.append({"kind": "fn", "id": "empty", "attr": {}})
    resources.append({"kind": "fn", "id": "pv", "attr": {}, "policyVersion": "default"})
    actions = sorted({a for rule in _function_actions() for a in (rule, f"{rule}_not")})
    return principals, resources, actions


def _function_actions() -> list[str]:
    import yaml

    doc = yaml.safe_load((FUNCTIONS / "fn.yaml").read_text())
    return [r["name"] for r in doc["resourcePolicy"]["rules"] if not r["name"].endswith("_not")]


def test_functions_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    """hierarchy(), the SPIFFE functions and id(), with Cerbos' errors (each action has a
    negated twin, so an error, DENY for both, differs from false)."""
    binary = cerbos_binary()
    compiled = subprocess.run(
        [str(binary), "compile", str(FUNCTIONS)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(FUNCTIONS)
    principals, resources, actions = _function_requests()
    n = 0
    with _server(binary, FUNCTIONS, tmp_path, {}) as url:
        for i in range(0, len(actions), 50):  # Cerbos: at most 50 actions per resource
            n += _compare_full(engine, url, principals, resources, actions[i : i + 50])
    assert n > 5000


ROLES = Path(__file__).parent / "bundles" / "roles"


def test_roles_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    """Role policies are exhaustive for their role (and parent roles) on a kind in their scope
    when the role policy has rules for the kind *or* the scope's resource policy has rules for
    one of those roles (also via `*` or a derived role's parent roles); chained parent roles."""
    binary = cerbos_binary()
    compiled = subprocess.run(
        [str(binary), "compile", str(ROLES)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(ROLES)
    role_sets = [
        ["r1"],
        ["r2"],
        ["r3"],
        ["r1", "r3"],
        ["user"],
        ["r2", "user"],
        ["admin", "r1"],
        ["r3", "r2"],
        ["nobody", "r1"],
    ]
    principals = [{"id": "u", "roles": r, "attr": {}} for r in role_sets]
    resources = [
        {"kind": k, "id": "1", "attr": {"owner": o}, **({"scope": s} if s else {})}
        for k in ("doc", "widget", "gadget", "gizmo")
        for s in ("", "acme", "acme.hr")
        for o in ("u", "x")
    ]
    actions = ["read", "write", "delete", "archive", "share", "purge"]
    with _server(binary, ROLES, tmp_path, {}) as url:
        n = _compare_full(engine, url, principals, resources, actions)
    assert n > 1000


EXPORTS = Path(__file__).parent / "bundles" / "exports"


def test_exports_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    """Exported variables reading constants that each importing policy defines."""
    binary = cerbos_binary()
    compiled = subprocess.run(
        [str(binary), "compile", str(EXPORTS)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(EXPORTS)
    principals = [{"id": "u", "roles": ["user"], "attr": {}}]
    resources = [
        {"kind": k, "id": "1", "attr": attr}
        for k in ("doc", "widget")
        for attr in (
            {"size": s, "tag": t} for s in (1, 10, 11, 100, 101, "x") for t in ("a", "z", 1)
        )
    ] + [{"kind": "doc", "id": "2", "attr": {}}]
    with _server(binary, EXPORTS, tmp_path, {}) as url:
        n = _compare_full(engine, url, principals, resources, ["read", "write"])
    assert n > 50


CEL_EXT = Path(__file__).parent / "bundles" / "cel_ext"


def _cel_ext_actions() -> list[str]:
    import yaml

    doc = yaml.safe_load((CEL_EXT / "cel_ext.yaml").read_text())
    return [r["name"] for r in doc["resourcePolicy"]["rules"]]


def test_cel_extensions_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    """cel-go extensions Cerbos enables: two-variable comprehensions, `sortBy`, the regex
    extension, `lists.range`, `first`/`last` (each rule has a negated twin, so an evaluation
    error, DENY for both, is told apart from false)."""
    binary = cerbos_binary()
    compiled = subprocess.run(
        [str(binary), "compile", str(CEL_EXT)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(CEL_EXT)
    principals = [
        {"id": f"p{i}", "roles": ["user"], "attr": attr}
        for i, attr in enumerate(
            [
                {"name": "aa12b", "key": "b", "pattern": "z"},
                {"name": "a12ab", "key": "a", "pattern": "("},
                {"name": "", "key": "", "pattern": ""},
                {"name": 5, "key": 1},
                {},
            ]
        )
    ]
    maps: list[Any] = [{"a": 1, "b": 2}, {"a": 0}, {}, "x", {"a": "s"}]
    lists: list[Any] = [[1, 2, 3], [3, 1, 2], [], ["a", 1], [2, 2], [1.5, 0.5], "x"]
    resources = [
        {"kind": "cel_ext", "id": f"r{i}-{j}", "attr": {"m": m, "l": lst}}
        for i, m in enumerate(maps)
        for j, lst in enumerate(lists)
    ] + [{"kind": "cel_ext", "id": "empty", "attr": {}}]
    actions = _cel_ext_actions()
    n = 0
    with _server(binary, CEL_EXT, tmp_path, {}) as url:
        for i in range(0, len(actions), 50):  # Cerbos: at most 50 actions per resource
            n += _compare_full(engine, url, principals, resources, actions[i : i + 50])
    assert n > 5000


FUSED = Path(__file__).parent / "bundles" / "fused"


def test_fused_bundle_matches_stock_cerbos(tmp_path: Path) -> None:
    """all/any conditions with failing, false and true operands in every position (the
    errors Vigil records are checked against leaf-by-leaf evaluation in test_conformance)."""
    from .test_conformance import _fused_resources

    binary = cerbos_binary()
    engine = PolicyEngine.from_directory(FUSED)
    principals = [{"id": "u", "roles": ["user"], "attr": {}}]
    with _server(binary, FUSED, tmp_path, {}) as url:
        n = _compare_full(
            engine, url, principals, _fused_resources(), ["all2", "any2", "nested", "d"]
        )
    assert n > 100


VARIABLES = Path(__file__).parent / "bundles" / "variables"


def test_failing_variables_match_stock_cerbos(tmp_path: Path) -> None:
    """A variable that fails to evaluate does not fail the check (unused: no effect; used: the
    condition is false; under `none`: true), as Vigil's inlining gives."""
    binary = cerbos_binary()
    engine = PolicyEngine.from_directory(VARIABLES)
    principals = [{"id": "u", "roles": ["user"], "attr": {}}]
    resources = [
        {"kind": "doc", "id": "1", "attr": attr}
        for attr in ({"ok": True, "n": 1}, {"ok": True, "missing": {"foo": 1}}, {"n": "x"}, {})
    ]
    with _server(binary, VARIABLES, tmp_path, {}) as url:
        n = _compare_full(engine, url, principals, resources, ["plain", "good", "bad", "notbad"])
    assert n == 16


def _random_role_bundle(seed: int, out: Path) -> dict[str, Any]:
    """A random bundle of resource policies (three kinds, scopes "", a, a.b) and role policies
    (custom roles with parent roles, possibly other custom roles, wildcard kinds and actions,
    conditions), plus the requests to compare."""
    import random

    rnd = random.Random(seed)
    out.mkdir(parents=True)
    kinds, scopes, actions = ["k1", "k2", "k3"], ["", "a", "a.b"], ["read", "write", "del"]
    roles, custom = ["u", "v", "c1", "c2", "c3"], ["c1", "c2", "c3"]

    def write(name: str, doc: dict[str, Any]) -> None:
        (out / name).write_text(json.dumps({"apiVersion": "api.cerbos.dev/v1", **doc}))

    for k in kinds:
        for s in scopes:
            if s and rnd.random() < 0.3 and s != "a":  # "a.b" may be missing
                continue
            rules: list[dict[str, Any]] = [
                {
                    "name": f"r{i}",
                    "actions": rnd.sample([*actions, "*"], rnd.randint(1, 2)),
                    "roles": rnd.sample([*roles, "*"], rnd.randint(1, 2)),
                    "effect": "EFFECT_DENY" if rnd.random() < 0.2 else "EFFECT_ALLOW",
                }
                for i in range(rnd.randint(0, 3))
            ] or [{"actions": ["zzz"], "roles": ["nobody"], "effect": "EFFECT_ALLOW"}]
            pol: dict[str, Any] = {"resource": k, "version": "default", "rules": rules}
            if s:
                pol["scope"] = s
            write(f"{k}_{s or 'root'}.json", {"resourcePolicy": pol})
    for c in custom:
        for s in ["a", "a.b"]:
            if rnd.random() < 0.4:
                continue
            parents = rnd.sample(["u", "v", *[x for x in custom if x != c]], rnd.randint(0, 2))
            rrules: list[dict[str, Any]] = []
            for _ in range(rnd.randint(0, 3)):
                rule: dict[str, Any] = {
                    "resource": rnd.choice([*kinds, "*"]),
                    "allowActions": rnd.sample([*actions, "*"], rnd.randint(1, 2)),
                }
                if rnd.random() < 0.3:
                    rule["condition"] = {"match": {"expr": "R.attr.ok == true"}}
                rrules.append(rule)
            if rrules:
                role_policy = {"role": c, "scope": s, "parentRoles": parents, "rules": rrules}
                write(f"role_{c}_{s}.json", {"rolePolicy": role_policy})
    role_sets = (["u"], ["v"], ["c1"], ["c2"], ["c3"], ["c1", "u"], ["c2", "c3"], ["v", "c1"])
    return {
        "principals": [{"id": "p", "roles": list(rs), "attr": {}} for rs in role_sets],
        "resources": [
            {"kind": k, "id": "1", "attr": {"ok": ok}, **({"scope": s} if s else {})}
            for k in kinds
            for s in scopes
            for ok in (True, False)
        ],
        "actions": [*actions, "other"],
    }


@pytest.mark.parametrize("seed", [3, 17, 23, 25, 86])
def test_random_role_bundles_match_stock_cerbos(tmp_path: Path, seed: int) -> None:
    """Random role/resource policy mixes (seeds that once found differences in when role
    policies apply to a kind)."""
    binary = cerbos_binary()
    bundle = tmp_path / "bundle"
    req = _random_role_bundle(seed, bundle)
    compiled = subprocess.run(
        [str(binary), "compile", str(bundle)], capture_output=True, text=True, timeout=60
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    engine = PolicyEngine.from_directory(bundle)
    with _server(binary, bundle, tmp_path, {}) as url:
        n = _compare_full(engine, url, req["principals"], req["resources"], req["actions"])
    assert n > 500
