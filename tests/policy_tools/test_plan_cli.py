"""`vigil policy plan DIR`: PlanResources requests as JSON lines on stdin, responses as JSON lines
on stdout (the twin of `vigil policy eval`, same engine flags); a bad line or a refused plan
gets an error line with its line number and processing goes on, exit code 1."""

from __future__ import annotations

import json

from tests.policy.test_planner_vs_cerbos import CORPUS
from tests.policy_tools.helpers import vigil

USER = {"id": "u1", "roles": ["user"], "attr": {"department": "eng", "teams": ["t1", "t2"]}}


def _plan(action: str, **extra: object) -> str:
    return json.dumps({"principal": USER, "resource": {"kind": "expr"}, "action": action, **extra})


def test_plan_command_answers_each_line() -> None:
    lines = [
        _plan("eq", requestId="r1", includeMeta=True),
        "",
        "{not json",
        _plan("err_or"),
        _plan("globals"),
    ]
    proc = vigil(
        "policy",
        "plan",
        "--globals",
        json.dumps({"env": "test"}),
        str(CORPUS),
        stdin="\n".join(lines) + "\n",
    )
    assert proc.returncode == 1, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == 4
    eq = out[0]
    assert eq["requestId"] == "r1" and len(eq.pop("cerbosCallId")) == 26
    assert eq == {
        "requestId": "r1",
        "action": "eq",
        "resourceKind": "expr",
        "filter": {
            "kind": "KIND_CONDITIONAL",
            "condition": {
                "expression": {
                    "operator": "eq",
                    "operands": [{"variable": "request.resource.attr.owner"}, {"value": "u1"}],
                }
            },
        },
        "meta": {"filterDebug": '(eq request.resource.attr.owner "u1")'},
    }
    assert out[1]["code"] == 3 and out[1]["line"] == 3
    assert out[2]["code"] == 12 and out[2]["line"] == 4
    assert out[2]["message"].startswith("cannot plan: a part of a condition that does not read")
    # --globals reaches the planner: G.env is folded in
    assert out[3]["filter"]["condition"]["expression"]["operands"][1] == {"value": "test"}
