"""Generated differential for query plans: the seeded stores of `tests.policy.gen.store`
(resource, principal and role policies, scopes with scopePermissions, derived roles,
variables, constants, globals, conditions over attributes of every JSON type), PlanResources
requests derived from the generated check requests (each resource planned without attributes and with
the ones generated), answered by the stock Cerbos PDP 0.55 and by Vigil's planner: every plan
Vigil answers must equal the PDP's, and most must be answered."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from streams.policy.api import build_engine
from tests.external_tools import cerbos_binary
from tests.policy.gen.requests import generate_requests
from tests.policy.gen.store import Features, generate_store
from tests.policy.test_planner_vs_cerbos import compare
from tests.policy_tools.helpers import _server

SEEDS = range(1, 11)
PLANS_PER_STORE = 200


def plan_requests(check_requests: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"plans-{seed}")
    out = []
    for n, req in enumerate(check_requests):
        for m, entry in enumerate(req["resources"]):
            resource = {k: v for k, v in entry["resource"].items() if k != "id"}
            if rng.random() < 0.6:
                resource.pop("attr", None)
            plan: dict[str, Any] = {
                "requestId": f"{req['requestId']}-{m}",
                "principal": req["principal"],
                "resource": resource,
                "includeMeta": bool(n % 2),
            }
            actions = list(dict.fromkeys(entry["actions"]))
            if len(actions) > 1 and rng.random() < 0.3:
                plan["actions"] = actions[:3]
            else:
                plan["action"] = actions[0]
            out.append(plan)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_plans_match_stock_cerbos(seed: int, tmp_path: Path) -> None:
    os.environ.setdefault("CERBOS_NO_TELEMETRY", "1")
    binary = cerbos_binary()
    store = generate_store(seed, Features(outputs=False))
    root = store.write(tmp_path / "store")
    engine = build_engine(root, globals_=store.globals_)
    plans = plan_requests(generate_requests(store, PLANS_PER_STORE // 2, seed), seed)
    with _server(binary, root, tmp_path, store.globals_) as pdp:
        answered, mismatches = compare(engine, pdp, plans)
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches[:3])
    # measured (python -m tests.policy.gen.plan_runner): 94% of the plans of seeds 1-45 and
    # 96% of seeds 100-160 answered, at least 79% on each of seeds 1-10 (was 1/3 before
    # scopes, principal and role policies were planned)
    assert answered >= len(plans) * 3 // 4, f"only {answered} of {len(plans)} plans answered"


def test_plan_requests_are_deterministic() -> None:
    store = generate_store(1)
    reqs = generate_requests(store, 5, 1)
    assert json.dumps(plan_requests(reqs, 1)) == json.dumps(plan_requests(reqs, 1))
