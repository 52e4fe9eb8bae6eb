"""CheckMemo, dependency analysis and fused conditions: results must be exactly those of plain
checks (and therefore of stock Cerbos, see test_differential.py)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.policy import CheckMemo, CheckResult, PolicyEngine
from streams.policy.deps import dependencies

from . import test_semantics as sem
from .conftest import POLICIES

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

# -- dependency analysis ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "deps"),
    [
        ('P.attr.signals.risk.level == "HIGH"', [("P", "attr", "signals", "risk", "level")]),
        (
            "request.principal.attr.signals.device.compliant == true",
            [("P", "attr", "signals", "device", "compliant")],
        ),
        ("has(R.attr.owner) && R.attr.owner == P.id", [("P", "id"), ("R", "attr", "owner")]),
        ("request.resource.id == P.id", [("P", "id"), ("R", "id")]),
        ('"x" in P.roles', [("P", "roles")]),
        ('"owner" in runtime.effectiveDerivedRoles', [("runtime", "effectiveDerivedRoles")]),
        ("timestamp(P.attr.since).timeSince() > duration('1h')", [("P", "attr", "since")]),
        ("P.attr.ip.inIPAddrRange('10.0.0.0/8')", [("P", "attr", "ip")]),
        ('P.attr.tags.exists(t, t == "x")', [("P", "attr", "tags")]),
        ("P.attr.a == 1 && P.attr.a.b == 2", [("P", "attr", "a")]),  # prefix covers
        ('G.env == "test" && globals["env"] == "test" && now() > timestamp(0)', []),
        ("cel.bind(x, P.attr.a, x + 1) > 2 && math.greatest(1, 2) == 2", [("P", "attr", "a")]),
        ("P.attr.n > 1.5 && .5 < R.attr.m // P.attr['x'] in a comment", None),
        ('r"P.attr[0]" == P.id', [("P", "id")]),
        ("type(P.attr.x) == string", [("P", "attr", "x")]),
    ],
)
def test_dependencies(src: str, deps: list[tuple[str, ...]] | None) -> None:
    got = dependencies(src)
    if deps is None:  # the comment test: the `//` comment hides the indexing
        assert got == (("P", "attr", "n"), ("R", "attr", "m"))
    else:
        assert got == tuple(sorted(deps))


@pytest.mark.parametrize(
    "src",
    [
        'P.attr["x"] == 1',  # indexing
        "P.attr.tags[0] == 1",
        "size(P.attr) > 0",  # the whole attr map
        "R.attr == {}",
        "P == R",
        "request.auxData.jwt.sub == P.id",
        "request.principal == {}",
        "has(request.auxData)",
        "runtime.size() > 0",
        "P.attr.exists(k, P.attr[k] == 1)",
        "[1].exists(P, P == 1)",  # shadows a root
        "cel.bind(R, 1, R == 1)",
        "unknown_var == 1",
        "(P.attr).x == 1",
        "P.attr.a.?b == 1",
        "x.P.id == 1",
    ],
)
def test_dependencies_conservative(src: str) -> None:
    assert dependencies(src) is None


def test_default_bundle_conditions_all_have_deps(engine: PolicyEngine) -> None:
    conds = engine._conditions()
    assert conds and all(c.deps is not None for c in conds)


# -- fused conditions: Cerbos' leaf-errors-are-false semantics --------------------------------

# leaf name -> (CEL source, Cerbos truth value). Errors and non-booleans are false in Cerbos.
LEAVES: dict[str, tuple[str, bool]] = {
    "T": ("true", True),
    "F": ("false", False),
    "T2": ('R.attr.s == "abc"', True),
    "F2": ('R.attr.s == "x"', False),
    "ERR": ('R.attr.missing == "x"', False),  # CEL error (no such key)
    "STR": ("R.attr.s", False),  # non-boolean value
    "PYEXC": ('"bad".inIPAddrRange("10.0.0.0/8")', False),  # custom function raises
    "SEL": ("R.attr.s.field == 1", False),  # select on a string
}


def _tree(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice(list(LEAVES))
    op = rng.choice(["all", "any", "all", "any", "none"])
    return (op, [_tree(rng, depth - 1) for _ in range(rng.randint(1, 3))])


def _cerbos(tree: Any) -> bool:
    if isinstance(tree, str):
        return LEAVES[tree][1]
    op, kids = tree
    vals = [_cerbos(k) for k in kids]
    return all(vals) if op == "all" else any(vals) if op == "any" else not any(vals)


def _yaml(tree: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(tree, str):
        return f"{pad}expr: '{LEAVES[tree][0].replace(chr(39), chr(39) * 2)}'\n"
    op, kids = tree
    out = f"{pad}{op}:\n{pad}  of:\n"
    for k in kids:
        body = _yaml(k, indent + 6)
        out += f"{pad}    - {body.lstrip()}"
    return out


def _has_none(tree: Any) -> bool:
    return not isinstance(tree, str) and (tree[0] == "none" or any(_has_none(k) for k in tree[1]))


def test_fused_conditions_keep_cerbos_error_semantics(
    make_bundle: Callable[[dict[str, str]], Path],
) -> None:
    rng = random.Random(7)
    trees: list[Any] = [
        ("all", ["ERR", "T"]),
        ("all", ["ERR", "F"]),
        ("all", ["T", "STR"]),
        ("any", ["ERR", "T"]),
        ("any", ["ERR", "F"]),
        ("any", ["PYEXC", "T"]),
        ("any", ["STR", "T2"]),
        ("any", ["SEL", "F2"]),
        ("none", ["ERR"]),  # Cerbos: true
        ("none", [("all", ["ERR", "T"])]),  # Cerbos: true
        ("all", [("any", ["ERR", "T"]), ("none", ["PYEXC", "F"])]),
    ]
    trees += [_tree(rng, 4) for _ in range(150)]
    rules = ""
    for i, tree in enumerate(trees):
        cond = _yaml(tree, 10)
        rules += (
            f"    - name: r{i}\n      actions: [a{i}]\n      roles: [u]\n"
            f"      effect: EFFECT_ALLOW\n      condition:\n        match:\n{cond}"
        )
    policy = (
        "apiVersion: api.cerbos.dev/v1\nresourcePolicy:\n  resource: t\n  version: default\n"
        f"  rules:\n{rules}"
    )
    engine = PolicyEngine.from_directory(make_bundle({"t.yaml": policy}))
    rules_by_name = {r.name: r for r in engine._policies[("t", "default", "")].rules}
    fused = 0
    actions = [f"a{i}" for i in range(len(trees))]
    res = engine.check({"id": "x", "roles": ["u"]}, {"kind": "t", "attr": {"s": "abc"}}, actions)
    for i, tree in enumerate(trees):
        cond = rules_by_name[f"r{i}"].condition
        assert cond is not None
        if not isinstance(tree, str) and not _has_none(tree):
            fused += cond.program is not None
        if not isinstance(tree, str) and tree[0] == "none":
            assert cond.program is None  # never fused
        assert res.allowed(f"a{i}") is _cerbos(tree), (i, tree)
    assert fused > 20


# -- memo gives identical results -------------------------------------------------------------


def _same(a: CheckResult, b: CheckResult) -> None:
    assert a.actions == b.actions
    assert a.effective_derived_roles == b.effective_derived_roles
    assert a.errors == b.errors


def _maybe(rng: random.Random, value: Any, p_missing: float = 0.15) -> Any:
    return _DROP if rng.random() < p_missing else value


_DROP = object()


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_clean(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not _DROP}


def _default_request(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    c = rng.choice
    signals = {
        "risk": {
            "level": _maybe(rng, c(["LOW", "LOW", "MEDIUM", "HIGH", 3])),
            "score": c([10, 10.0, 55.5, "x"]),
        },
        "device": _maybe(
            rng,
            {
                "id": c(["", "D1"]),
                "compliant": _maybe(rng, c([True, True, False, "yes", 1])),
                "status": "compliant",
            },
        ),
        "identity": {
            "account_status": _maybe(rng, c(["enabled", "enabled", "disabled"])),
            "credential_compromised": _maybe(rng, c([False, False, True, 0])),
        },
        "network": {"zone": _maybe(rng, c(["corp", "vpn", "untrusted", ""]))},
        "session": _maybe(rng, {"id": "s", "revoked": _maybe(rng, c([False, False, True]))}),
    }
    expires = c(["", "", "2999-01-01T00:00:00Z", "2001-01-01T00:00:00Z", "garbage", 5])
    attr = {
        "signals": _maybe(rng, signals, 0.05),
        "grant": {"id": f"g{rng.randint(0, 5)}", "expires_at": _maybe(rng, expires)},
    }
    principal = {
        "id": c(["alice", "bob"]),
        "roles": rng.sample(["employee", "agent", "admin", "contractor"], rng.randint(1, 2)),
        "attr": _clean(attr),
    }
    rattr = {"owner": _maybe(rng, c(["alice", "bob", 7]), 0.3)}
    resource = {
        "kind": c(["document", "document", "document", "tool", "nope"]),
        "id": f"r{rng.randint(0, 9)}",
        "attr": _clean(rattr),
    }
    actions = rng.sample(["read", "write", "delete", "share", "invoke", "admin"], rng.randint(1, 3))
    return principal, resource, actions


def _semantics_request(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    c = rng.choice
    attr = {
        "score": _maybe(rng, c([95, 95.0, 15, 50, "high"])),
        "tags": _maybe(rng, c([["x", "z"], ["x"], [], "x"])),
        "ip": _maybe(rng, c(["10.1.2.3", "192.168.0.1", "bad"])),
        "since": _maybe(rng, c(["2026-05-31T00:00:00Z", "2026-05-31T23:30:00Z", "nope"])),
    }
    principal = {
        "id": c(["u", "x"]),
        "roles": rng.sample(["a", "b", "q", "manager"], rng.randint(1, 2)),
        "attr": _clean(attr),
    }
    resource = {
        "kind": "doc",
        "id": "1",
        "attr": _clean({"owner": _maybe(rng, c(["u", "x", "mallory"]), 0.3)}),
        "scope": c(["", "acme", "acme.hr", "nope"]),
    }
    actions = sorted({c[4] for c in sem.CASES} | {"fn", "approve", "edr", "none"})
    return principal, resource, rng.sample(actions, rng.randint(1, 4))


@pytest.fixture
def sem_engine(make_bundle: Callable[[dict[str, str]], Path]) -> PolicyEngine:
    root = make_bundle(
        {
            "dr.yaml": sem.DERIVED,
            "doc.yaml": sem.ROOT,
            "acme/doc.yaml": sem.SCOPED,
            "acme/hr.yml": sem.SCOPED2,
        }
    )
    return PolicyEngine.from_directory(root, globals_={"env": "test"})


@pytest.mark.parametrize("bundle", ["default", "semantics"])
def test_memo_matches_plain_checks(bundle: str, sem_engine: PolicyEngine) -> None:
    engine = PolicyEngine.from_directory(POLICIES) if bundle == "default" else sem_engine
    gen = _default_request if bundle == "default" else _semantics_request
    rng = random.Random(1234)
    requests = [gen(rng) for _ in range(1500)]
    big = engine.new_memo(now=NOW)
    hits = 0
    for start in range(0, len(requests), 10):
        batch = engine.new_memo(now=NOW)
        for p, r, actions in requests[start : start + 10]:
            plain = engine.check(p, r, actions, now=NOW)
            _same(plain, engine.check(p, r, actions, memo=batch))
            _same(plain, engine.check(p, r, actions, memo=big))
            _same(plain, engine.check(p, r, actions, memo=batch))  # all hits now
        hits += batch.hits + batch.check_hits
    assert hits > 1000 and big.hits + big.check_hits > 1000
    assert any(engine.check(*req, now=NOW).errors for req in requests)


def test_memo_grants_of_one_subject(engine: PolicyEngine) -> None:
    from streams.policy.bench import grant_requests

    grants = grant_requests(10)
    memo = engine.new_memo(now=NOW)
    for p, r, actions in grants:
        _same(engine.check(p, r, actions, now=NOW), engine.check(p, r, actions, memo=memo))
    assert memo.hits + memo.check_hits > memo.misses


def test_memo_hit_replays_errors(sem_engine: PolicyEngine) -> None:
    memo = sem_engine.new_memo(now=NOW)
    p = {"id": "u", "roles": ["a"], "attr": sem.P_ATTR}
    r = {"kind": "doc", "id": "1", "attr": {"owner": "x"}}
    first = sem_engine.check(p, r, ["err"], memo=memo)
    second = sem_engine.check(p, {**r, "id": "2"}, ["err"], memo=memo)
    assert first.errors and second.errors == first.errors
    assert memo.hits + memo.check_hits >= 1


def test_memo_keys_distinguish_types_and_missing(engine: PolicyEngine) -> None:
    """1.0 vs true vs "1", missing at different depths: never the same cached answer."""
    memo = engine.new_memo(now=NOW)
    values: list[Any] = [True, 1, 1.0, "true", None, [], {}]
    for v in values:
        p = {"id": "alice", "roles": ["employee"], "attr": {"signals": {"session": {"revoked": v}}}}
        r = {"kind": "document", "id": "d"}
        _same(engine.check(p, r, ["read"], now=NOW), engine.check(p, r, ["read"], memo=memo))
    for attr in ({}, {"signals": {}}, {"signals": {"session": {}}}, {"signals": "x"}):
        p = {"id": "alice", "roles": ["employee"], "attr": attr}
        r = {"kind": "document", "id": "d"}
        _same(engine.check(p, r, ["read"], now=NOW), engine.check(p, r, ["read"], memo=memo))


def test_memo_now_is_fixed(sem_engine: PolicyEngine) -> None:
    p = {"id": "u", "roles": ["a"], "attr": sem.P_ATTR}
    r = {"kind": "doc", "id": "1"}
    assert sem_engine.check(p, r, ["fn"], memo=sem_engine.new_memo(now=NOW)).allowed("fn")
    later = sem_engine.new_memo(now=NOW + dt.timedelta(seconds=1))
    assert not sem_engine.check(p, r, ["fn"], memo=later).allowed("fn")
    memo = CheckMemo(NOW)
    assert sem_engine.check(p, r, ["fn"], memo=memo, now=NOW).allowed("fn")
    with pytest.raises(ValueError, match="now"):
        sem_engine.check(p, r, ["fn"], memo=memo, now=NOW + dt.timedelta(seconds=1))


def test_memo_is_bound_to_one_engine(engine: PolicyEngine, sem_engine: PolicyEngine) -> None:
    memo = engine.new_memo()
    with pytest.raises(ValueError, match="another"):
        sem_engine.check({"id": "u", "roles": ["a"]}, {"kind": "doc", "id": "1"}, ["x"], memo=memo)


def test_memo_skips_work_when_inputs_repeat(engine: PolicyEngine) -> None:
    from streams.policy.bench import _principal

    memo = engine.new_memo(now=NOW)
    p = _principal(["employee"])
    engine.check(p, {"kind": "document", "id": "d1", "attr": {"owner": "bob"}}, ["read"], memo=memo)
    misses = memo.misses
    res = engine.check(
        p, {"kind": "document", "id": "d2", "attr": {"owner": "bob"}}, ["read"], memo=memo
    )
    assert res.allowed("read") and memo.misses == misses


# -- the projected request gives the same answers as the full request ---------------------------

MIXED = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: m
  version: default
  rules:
    - name: alias
      actions: ["*"]
      roles: ["*"]
      effect: EFFECT_DENY
      condition:
        match:
          expr: request.principal.attr.flag == true && request.resource.id == "bad"
    - name: whole-request
      actions: ["*"]
      roles: ["*"]
      effect: EFFECT_DENY
      condition:
        match:
          expr: P.attr["blocked"] == true || request.auxData.jwt.sub == "mallory"
    - name: nested
      actions: ["*"]
      roles: ["*"]
      effect: EFFECT_DENY
      condition:
        match:
          any:
            of:
              - expr: P.attr.a.b.c == 1
              - expr: has(P.attr.a.d) && P.attr.a.d.size() > 2
    - name: ok
      actions: ["read", "write"]
      roles: ["u"]
      effect: EFFECT_ALLOW
      condition:
        match:
          all:
            of:
              - expr: P.attr.level >= 2.0
              - expr: R.attr.tags.exists(t, t == "public") || R.kind == "m"
              - expr: G.env == "test"
              - none:
                  of:
                    - expr: P.attr.a.b.c == 2
"""


def _mixed_request(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    c = rng.choice
    attr = {
        "flag": _maybe(rng, c([True, False, 1])),
        "blocked": _maybe(rng, c([True, False]), 0.6),
        "level": _maybe(rng, c([1, 2, 3.5, "2"])),
        "a": _maybe(rng, c([{"b": {"c": c([1, 2, 1.0, "1"])}}, {"b": 5}, {"d": [1, 2, 3]}, {}, 7])),
    }
    principal = {"id": "p", "roles": ["u"], "attr": _clean(attr)}
    resource = {
        "kind": "m",
        "id": c(["bad", "good"]),
        "attr": _clean({"tags": _maybe(rng, c([["public"], ["x"], "public"]))}),
    }
    return principal, resource, c([["read"], ["read", "write"], ["delete"]])


def test_projection_matches_full_request(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    root = make_bundle({"m.yaml": MIXED})
    projected = PolicyEngine.from_directory(root, globals_={"env": "test"})
    full = PolicyEngine.from_directory(root, globals_={"env": "test"})
    full._use_projection = False
    assert projected._proj_request and projected._proj_globals
    rng = random.Random(99)
    memo = projected.new_memo(now=NOW)
    seen_errors = 0
    for _ in range(800):
        p, r, actions = _mixed_request(rng)
        aux = {"jwt": {"sub": c}} if (c := rng.choice(["", "mallory", None])) is not None else None
        ref = full.check(p, r, actions, aux_data=aux, now=NOW)
        _same(ref, projected.check(p, r, actions, aux_data=aux, now=NOW))
        _same(ref, projected.check(p, r, actions, aux_data=aux, memo=memo))
        seen_errors += bool(ref.errors)
    assert seen_errors > 50
