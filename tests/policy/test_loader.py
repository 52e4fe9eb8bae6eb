"""Which files are policies, and the bundle digest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streams.policy import PolicyCompileError, PolicyEngine
from streams.policy.loader import is_policy_path, load_directory

from .conftest import POLICIES

POLICY = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: doc
  version: default
  rules:
    - actions: ["read"]
      roles: ["a"]
      effect: EFFECT_ALLOW
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("doc.yaml", True),
        ("a/b/doc.yml", True),
        ("doc.json", True),
        ("doc_test.yaml", False),
        ("tests/doc_test.yml", False),
        ("tests/testdata/principals.yaml", False),
        (".hidden.yaml", False),
        (".git/x.yaml", False),
        ("_schemas/x.json", False),
        ("README.md", False),
    ],
)
def test_is_policy_path(path: str, expected: bool) -> None:
    assert is_policy_path(path) is expected


def test_skips_what_cerbos_skips(make_bundle: Callable[[dict[str, str]], Path]) -> None:
    root = make_bundle(
        {
            "doc.yaml": POLICY,
            "empty.yaml": "# only a comment: no policy, as in Cerbos\n",
            "tests/doc_test.yaml": "name: x\ntests: [",  # broken on purpose: must not be read
            "tests/testdata/principals.yaml": "principals: {}\n",
            "_schemas/x.json": "{",
            ".hidden/x.yaml": "nope: [",
            "notes.txt": "hello",
        }
    )
    bundle = load_directory(root)
    assert [f.rel_path for f in bundle.files] == ["doc.yaml"]
    assert not bundle.issues
    assert "notes.txt" in bundle.skipped and "_schemas/x.json" in bundle.skipped
    engine = PolicyEngine.from_directory(root)
    assert engine.check({"id": "u", "roles": ["a"]}, {"kind": "doc", "id": "1"}, ["read"]).allowed(
        "read"
    )


@pytest.mark.parametrize(
    ("files", "where", "fragment"),
    [
        # Another component's config in the store: Cerbos refuses it, so does Vigil.
        ({"risk.yaml": "base:\n  reported: {LOW: 10}\n"}, ("risk.yaml", "base"), "unknown field"),
        (
            {"v2.yaml": POLICY.replace("cerbos.dev/v1", "cerbos.dev/v2")},
            ("v2.yaml", "apiVersion"),
            "must equal `api.cerbos.dev/v1`",
        ),
        (
            {"nover.yaml": POLICY.replace("apiVersion: api.cerbos.dev/v1", "")},
            ("nover.yaml", "apiVersion"),
            "value is required",
        ),
        ({"list.yml": "- a\n- b\n"}, ("list.yml", ""), "invalid document"),
        ({"DOC.YAML": "hello: 1\n"}, ("DOC.YAML", "hello"), "unknown field"),
        ({"two.yaml": POLICY + "---\n" + POLICY}, ("two.yaml", ""), "more than one YAML document"),
        (
            {"dup.yaml": POLICY.replace("version: default", "version: default\n  version: v2")},
            ("dup.yaml", "resourcePolicy.version"),
            'mapping key "version" already defined',
        ),
        (
            {"dup.json": '{"apiVersion": "api.cerbos.dev/v1", "apiVersion": "x"}'},
            ("dup.json", ""),
            'mapping key "apiVersion" already defined',
        ),
        ({"x/_schemas/s.json": "{}"}, ("x/_schemas", ""), "must be at the root"),
    ],
)
def test_invalid_files_are_errors_not_skipped(
    make_bundle: Callable[[dict[str, str]], Path],
    files: dict[str, str],
    where: tuple[str, str],
    fragment: str,
) -> None:
    root = make_bundle({"doc.yaml": POLICY, **files})
    with pytest.raises(PolicyCompileError) as info:
        PolicyEngine.from_directory(root)
    found = [(e.file, e.path) for e in info.value.errors if fragment in e.message]
    assert found == [where], info.value


def test_digest_is_stable_and_content_sensitive(
    make_bundle: Callable[[dict[str, str]], Path],
) -> None:
    root = make_bundle({"doc.yaml": POLICY, "ignored.txt": "foo: 1\n"})
    d1 = PolicyEngine.from_directory(root).digest
    assert d1.startswith("sha256:") and len(d1) == len("sha256:") + 64
    assert PolicyEngine.from_directory(root).digest == d1
    (root / "ignored.txt").write_text("foo: 2\n")  # not a policy: does not change the bundle
    assert PolicyEngine.from_directory(root).digest == d1
    (root / "doc.yaml").write_text(POLICY + "# comment\n")
    d2 = PolicyEngine.from_directory(root).digest
    assert d2 != d1
    (root / "doc.yaml").rename(root / "renamed.yaml")
    assert PolicyEngine.from_directory(root).digest not in (d1, d2)


def test_default_bundle_loads() -> None:
    bundle = load_directory(POLICIES)
    names = sorted(f.rel_path for f in bundle.files)
    assert {"agent_tool.yaml", "derived_roles.yaml", "document.yaml"} <= set(names)


@pytest.mark.parametrize(
    "ref",
    [
        "cerbos:///../outside.json",
        "cerbos:///sub/../../outside.json",
        "cerbos:///./../outside.json",
    ],
)
def test_a_schema_ref_never_reads_outside_schemas(
    make_bundle: Callable[[dict[str, str]], Path], ref: str
) -> None:
    """A bundle arrives from Kafka: its schema refs must not make a worker read other files."""
    root = make_bundle(
        {
            "_schemas/ok.json": '{"type": "object"}',
            "doc.yaml": f"""
                apiVersion: api.cerbos.dev/v1
                resourcePolicy:
                  resource: doc
                  version: default
                  schemas:
                    resourceSchema:
                      ref: "{ref}"
                  rules:
                    - actions: ["read"]
                      roles: ["user"]
                      effect: EFFECT_ALLOW
            """,
        }
    )
    (root.parent / "outside.json").write_text('{"type": "object"}')
    with pytest.raises(PolicyCompileError, match="leaves _schemas/"):
        PolicyEngine.from_directory(root, schema_enforcement="reject")  # schemas are read
