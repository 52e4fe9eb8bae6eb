"""`vigil policy eval` against the stock Cerbos PDP 0.55: the same CheckResources requests, one
per line to `vigil policy eval` and one per HTTP call to `cerbos server`, must get the same
responses (all fields but `cerbosCallId`), with `includeMeta` true and false, and invalid
requests must be rejected by both (code 3).

The bundle combines the default Vigil policies, the Cerbos examples of data/ and the semantics
bundle of tests/policy/test_semantics.py (scopes, derived roles, globals, error handling). When
the engine produces rule outputs, a policy with outputs joins it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

from streams.policy.loader import load_directory
from streams.policy.model import CheckResult
from tests.policy import test_semantics as sem
from tests.policy.conftest import POLICIES, principal

from .helpers import DATA, _server, cerbos_binary, post_check, strip_response, vigil

GLOBALS = {"env": "test", "maintenance": False}

OUTPUTS_POLICY = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: widget
  version: default
  rules:
    - name: view-with-output
      actions: ["view"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      output:
        when:
          ruleActivated: '{"principal": P.id, "n": 1, "tags": ["a"]}'
          conditionNotMet: '"not-ok"'
      condition:
        match:
          expr: R.attr.ok == true
    - name: edit-denied
      actions: ["edit"]
      roles: ["*"]
      effect: EFFECT_DENY
      output:
        when:
          ruleActivated: 'R.id + " locked"'
"""


def _supports_outputs() -> bool:
    return "outputs" in getattr(CheckResult, "__dataclass_fields__", {})


def _bundle(root: Path) -> Path:
    for lf in load_directory(POLICIES).files:  # stock Cerbos rejects non-policy YAML
        (root / "vigil" / lf.rel_path).parent.mkdir(parents=True, exist_ok=True)
        (root / "vigil" / lf.rel_path).write_bytes(lf.raw)
    for example in ("album", "leave_request"):
        shutil.copytree(DATA / example, root / example, ignore=shutil.ignore_patterns("tests"))
    for rel, text in {
        "dr.yaml": sem.DERIVED,
        "doc.yaml": sem.ROOT,
        "acme/doc.yaml": sem.SCOPED,
        "acme/hr.yml": sem.SCOPED2,
    }.items():
        (root / "sem" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "sem" / rel).write_text(text)
    if _supports_outputs():
        (root / "widget.yaml").write_text(OUTPUTS_POLICY)
    return root


def _requests(n: int, include_meta: bool, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    recent = (now - dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = (now - dt.timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    principals: list[dict[str, Any]] = [
        principal("alice", ("employee",)),
        principal("bob", ("agent",), risk={"level": "HIGH", "score": 90}),
        principal("carol", ("admin", "employee"), device={"compliant": False}),
        {"id": "aliciaID", "roles": ["user"], "attr": {}},
        {"id": "mariaID", "roles": ["moderator", "user"]},
        {"id": "ivanID", "roles": ["auditor"], "attr": {"n": 3}},
        {
            "id": "john",
            "roles": ["employee"],
            "policyVersion": "20210210",
            "attr": {"geography": "GB"},
        },
        {
            "id": "sally",
            "roles": ["employee", "manager"],
            "attr": {"geography": "GB", "managed_geographies": ["GB"]},
        },
        {"id": "hanna", "roles": ["employee", "hr"], "scope": "acme"},
        {"id": "u", "roles": ["a"], "attr": sem.P_ATTR},
        {"id": "u", "roles": ["b", "a"], "attr": {"score": 15, "tags": []}},
        {"id": "x", "roles": ["manager", "q"]},
    ]
    album = {"owner": "aliciaID", "public": True, "flagged": False, "created_at": recent}
    leave = {"owner": "john", "geography": "GB", "status": "PENDING_APPROVAL"}
    resources: list[tuple[dict[str, Any], list[str]]] = [
        (
            {"kind": "document", "id": "d1", "attr": {"owner": "alice"}},
            ["read", "write", "share", "zzz"],
        ),
        ({"kind": "document", "id": "d2", "attr": {}}, ["read", "delete"]),
        ({"kind": "tool", "id": "t1"}, ["invoke", "admin", "admin:reset"]),
        ({"kind": "album:object", "id": "a1", "attr": album}, ["view", "delete", "share", "flag"]),
        (
            {
                "kind": "album:object",
                "id": "a2",
                "attr": {**album, "public": False, "flagged": True},
            },
            ["view", "delete"],
        ),
        (
            {"kind": "album:object", "id": "a3", "attr": {**album, "created_at": old}},
            ["share", "audit"],
        ),
        (
            {"kind": "leave_request", "id": "l1", "policyVersion": "20210210", "attr": leave},
            ["view", "approve", "view:public", "delete"],
        ),
        (
            {
                "kind": "leave_request",
                "id": "l2",
                "policyVersion": "20210210",
                "scope": "acme",
                "attr": leave,
            },
            ["delete", "view"],
        ),
        (
            {
                "kind": "leave_request",
                "id": "l3",
                "policyVersion": "20210210",
                "scope": "acme.hr",
                "attr": {**leave, "owner": "hanna"},
            },
            ["approve", "view:all"],
        ),
        ({"kind": "leave_request", "id": "l4", "attr": leave}, ["view"]),
        (
            {"kind": "doc", "id": "s1", "attr": {"owner": "u"}},
            ["read", "edit", "anything", "edr", "err", "err-any", "none"],
        ),
        (
            {"kind": "doc", "id": "s2", "scope": "acme", "attr": {"owner": "x"}},
            ["read", "edit", "approve", "risky"],
        ),
        (
            {"kind": "doc", "id": "s3", "scope": "acme.hr", "attr": {}},
            ["read", "edit", "view:x", "bulk:a:b"],
        ),
        ({"kind": "doc", "id": "s4", "scope": "nope"}, ["read"]),
        ({"kind": "unknown", "id": "u1"}, ["read"]),
    ]
    if _supports_outputs():
        resources += [
            ({"kind": "widget", "id": "w1", "attr": {"ok": True}}, ["view", "edit"]),
            ({"kind": "widget", "id": "w2", "attr": {"ok": False}}, ["view"]),
        ]
        principals.append({"id": "wu", "roles": ["user"]})
    out = []
    for i in range(n):
        prin = rng.choice(principals)
        chosen = rng.sample(resources, rng.randint(1, 4))
        entries = []
        for res, actions in chosen:
            acts = rng.sample(actions, rng.randint(1, len(actions)))
            entries.append({"resource": res, "actions": acts})
        req: dict[str, Any] = {"principal": prin, "resources": entries}
        if include_meta or rng.random() < 0.5:
            req["includeMeta"] = include_meta
        if rng.random() < 0.7:
            req["requestId"] = f"req-{seed}-{i}"
        if rng.random() < 0.2:
            req["auxData"] = {}
        out.append(req)
    return out


INVALID = [
    {
        "principal": {"id": "", "roles": ["a"]},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["read"]}],
    },
    {
        "principal": {"id": "u", "roles": []},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["read"]}],
    },
    {"principal": {"id": "u", "roles": ["a"]}, "resources": []},
    {
        "principal": {"id": "u", "roles": ["a"]},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": []}],
    },
    {
        "principal": {"id": "u", "roles": ["a"]},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["r", "r"]}],
    },
    {
        "principal": {"id": "u", "roles": ["a", "a"]},
        "resources": [{"resource": {"kind": "doc", "id": ""}, "actions": ["r"]}],
    },
    {
        "principal": {"id": "u", "roles": ["a"]},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["r"]}],
        "bogus": 1,
    },
    {
        "requestId": 5,
        "principal": {"id": "u", "roles": ["a"]},
        "resources": [{"resource": {"kind": "doc", "id": "1"}, "actions": ["r"]}],
    },
]


def test_eval_matches_stock_cerbos_http_api(tmp_path: Path) -> None:
    binary = cerbos_binary()
    bundle = _bundle(tmp_path / "bundle")
    requests = _requests(250, True, seed=1) + _requests(250, False, seed=2)
    stdin = "\n".join(json.dumps(r) for r in [*requests, *INVALID]) + "\n"
    proc = vigil("policy", "eval", "--globals", json.dumps(GLOBALS), str(bundle), stdin=stdin)
    assert proc.returncode == 1, proc.stderr  # the INVALID lines
    ours = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(ours) == len(requests) + len(INVALID)
    mismatches = []
    with _server(binary, bundle, tmp_path, GLOBALS) as url:
        for i, req in enumerate(requests):
            status, theirs = post_check(url, req)
            assert status == 200, theirs
            assert ours[i]["cerbosCallId"] and len(ours[i]["cerbosCallId"]) == 26
            if strip_response(ours[i]) != strip_response(theirs):
                mismatches.append(
                    f"request {json.dumps(req)}\n cerbos {json.dumps(strip_response(theirs))}\n"
                    f" vigil  {json.dumps(strip_response(ours[i]))}"
                )
        for j, bad in enumerate(INVALID):
            status, theirs = post_check(url, bad)
            mine = ours[len(requests) + j]
            assert status == 400 and theirs["code"] == 3, theirs
            assert mine["code"] == 3 and mine["line"] == len(requests) + j + 1, mine
            if theirs["message"].startswith("validation error"):
                assert mine["message"] == theirs["message"]
    assert not mismatches, "\n".join(mismatches[:5])
    checks = sum(len(e["actions"]) for r in requests for e in r["resources"])
    assert checks > 1500
    assert any(
        r.get("meta", {}).get("effectiveDerivedRoles")
        for r in (res for o in ours[: len(requests)] for res in o["results"])
    )
