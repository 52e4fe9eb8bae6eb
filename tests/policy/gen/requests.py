"""Seeded CheckResources requests for a generated store: principals with roles, attributes,
scope and policyVersion; several resources per request (kinds of the store and an unknown one,
scopes that exist and that do not); several actions per resource, wildcard-matched and unknown
ones included. Attributes are present, missing, or of another JSON type than the policies
expect."""

from __future__ import annotations

import random
from typing import Any

from .cel import P_ATTRS, R_ATTRS, VALUES
from .store import ACTIONS, PRINCIPALS, Store

#: Cerbos' default request limits (server.requestLimits): resources per request and actions
#: per resource.
MAX_RESOURCES = 50
MAX_ACTIONS = 50


def _attrs(rng: random.Random, schema: dict[str, str], owners: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kinds = sorted(VALUES)
    for name, kind in schema.items():
        r = rng.random()
        if r < 0.2:
            continue  # missing
        if r < 0.3:
            kind = kinds[rng.randrange(len(kinds))]  # another type
        pool = owners if name == "owner" and kind == "str" else VALUES[kind]
        out[name] = pool[rng.randrange(len(pool))]
    return out


def _scope(rng: random.Random, store: Store) -> str | None:
    r = rng.random()
    if r < 0.4 or not store.scopes:
        return None
    if r < 0.85:
        return store.scopes[rng.randrange(len(store.scopes))]
    return ["nope", "acme.nope", ".", "beta.x.y"][rng.randrange(4)]


def _principal(rng: random.Random, store: Store) -> dict[str, Any]:
    pid = (PRINCIPALS + ["erin"])[rng.randrange(len(PRINCIPALS) + 1)]
    roles = rng.sample(store.roles + ["nobody"], rng.randint(1, min(3, len(store.roles) + 1)))
    p: dict[str, Any] = {"id": pid, "roles": roles}
    if rng.random() < 0.9:
        p["attr"] = _attrs(rng, P_ATTRS, PRINCIPALS)
    scope = _scope(rng, store)
    if scope is not None and rng.random() < 0.5:
        p["scope"] = scope
    if rng.random() < 0.15:
        p["policyVersion"] = "default"
    return p


def _resource(rng: random.Random, store: Store, i: int) -> dict[str, Any]:
    kinds = [*store.kinds, "unknown_kind"]
    kind = store.kinds[rng.randrange(len(store.kinds))] if rng.random() < 0.93 else kinds[-1]
    r: dict[str, Any] = {"kind": kind, "id": f"r{i}"}
    if rng.random() < 0.9:
        r["attr"] = _attrs(rng, R_ATTRS, [*PRINCIPALS, "erin"])
    scope = _scope(rng, store)
    if scope is not None:
        r["scope"] = scope
    if rng.random() < 0.25:
        versions = [*store.versions, "v9"]
        r["policyVersion"] = versions[rng.randrange(len(versions))]
    return r


def generate_requests(
    store: Store, n: int, seed: int, resources_per_request: int = 2
) -> list[dict[str, Any]]:
    """`n` CheckResources requests (with `includeMeta`), the same for the same arguments."""
    rng = random.Random(f"requests-{seed}")
    actions = [*ACTIONS, "share:other", "view:public:x", "unknown"]
    out = []
    for i in range(n):
        entries = []
        for j in range(rng.randint(1, min(resources_per_request * 2 - 1, MAX_RESOURCES))):
            acts = rng.sample(actions, rng.randint(1, min(5, MAX_ACTIONS)))
            entries.append({"resource": _resource(rng, store, j), "actions": acts})
        out.append(
            {
                "requestId": f"s{store.seed}-{i}",
                "principal": _principal(rng, store),
                "resources": entries,
                "includeMeta": True,
            }
        )
    return out
