"""One CEL tokenizer for variable inlining and dependency analysis: `//` comments, strings and
names are read the same way by both (issue 7: a comment broke variable inlining)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streams.policy import PolicyEngine
from streams.policy.celtokens import scan
from streams.policy.deps import dependencies
from streams.policy.substitute import Inliner

SOURCES = [
    "P.attr.a == 1 // it's fine",
    'R.attr.x == "// not a comment" && V.ok',
    "V.a // don't inline V.b here\n  || V.b",
    "r'raw \\' string' + b\"bytes\" + '''tri'ple''' + `bq-id`",
    "x.V.name && 1.5e3 > .5 && 0x1Fu != 2u",
]


@pytest.mark.parametrize("src", SOURCES)
def test_scan_is_lossless(src: str) -> None:
    assert "".join(text for _, text in scan(src)) == src


def test_comments_are_not_code() -> None:
    inliner = Inliner({"a": "P.attr.a == 1 // it's the owner", "b": "R.attr.b"}, {})
    assert inliner.expand("V.a // don't inline V.b here\n  || V.b") == (
        "dyn(P.attr.a == 1 ) \n  || dyn(R.attr.b)"
    )
    assert inliner.expand('"// V.a" + V.b') == '"// V.a" + dyn(R.attr.b)'
    assert dependencies("P.attr.a == 1 // R.attr.secret, it's a comment") == (("P", "attr", "a"),)


DOC = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  variables:
    local:
      is_owner: R.attr.owner == P.id // the owner's documents
      is_public: R.attr.public == true
  rules:
    - actions: ["read"]
      roles: ["user"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: |-
            V.is_owner // it's theirs
              || V.is_public
"""


def test_commented_conditions_compile_and_decide(
    make_bundle: Callable[[dict[str, str]], Path],
) -> None:
    engine = PolicyEngine.from_directory(make_bundle({"doc.yaml": DOC}))
    for attr, allowed in (
        ({"owner": "alice", "public": False}, True),
        ({"owner": "bob", "public": True}, True),
        ({"owner": "bob", "public": False}, False),
    ):
        res = engine.check(
            {"id": "alice", "roles": ["user"]}, {"kind": "doc", "id": "1", "attr": attr}, ["read"]
        )
        assert res.allowed("read") is allowed, attr
        assert not res.errors
