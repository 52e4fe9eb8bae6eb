"""Cerbos CEL library functions added to cel_env: hierarchy(), SPIFFE, id() (unit level; the
stock-PDP comparison is test_differential.py::test_functions_bundle_matches_stock_cerbos)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.policy import cel_env
from streams.policy.deps import dependencies

ENV = cel_env.new_env()
ERROR = object()


def ev(src: str, **attr: Any) -> Any:
    value = ENV.compile(src).eval(data={"P": {"attr": attr}, "R": {"attr": {}}})
    if value.type() == cel_env.cel.Type.ERROR:
        return ERROR
    return value.plain_value()


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ('hierarchy("a.b").ancestorOf(hierarchy("a.b.c"))', True),
        ('hierarchy("a.b").ancestorOf(hierarchy("a.b"))', False),
        ('hierarchy("a.b").ancestorOf(hierarchy("a.c.d"))', False),
        ('hierarchy("a.b.c").descendentOf(hierarchy("a"))', True),
        ('hierarchy("a.b").immediateChildOf(hierarchy("a"))', True),
        ('hierarchy("a.b.c").immediateChildOf(hierarchy("a"))', False),
        ('hierarchy("a").immediateParentOf(hierarchy("a.b"))', True),
        ('hierarchy("a.b").siblingOf(hierarchy("a.c"))', True),
        ('hierarchy("a.b").siblingOf(hierarchy("b.b"))', False),
        ('hierarchy("a.b").overlaps(hierarchy("a.b.c"))', True),
        ('hierarchy("a.b.c").overlaps(hierarchy("a.b"))', True),
        ('hierarchy("a.b").overlaps(hierarchy("a.c"))', False),
        ('hierarchy("a.b.c").commonAncestors(hierarchy("a.b.d")) == hierarchy("a.b")', True),
        # Equal lengths: Cerbos drops the last element first, so a hierarchy is not its own.
        ('hierarchy("a.b").commonAncestors(hierarchy("a.b")) == hierarchy("a")', True),
        ('hierarchy("a.b").commonAncestors(hierarchy("a.b.c")) == hierarchy("a.b")', True),
        ('hierarchy("a.b.c").size()', 3),
        ('hierarchy("a.b.c")[2]', "c"),
        ('hierarchy("a/b", "/") == hierarchy(["a", "b"])', True),
        ('hierarchy("ab", "").size()', 2),
        ('hierarchy("", "").size()', 0),
        ('hierarchy("").size()', 1),
        ('hierarchy("a.b")[5]', ERROR),
        ("hierarchy(P.attr.x).size()", ERROR),  # a number: no such overload
        ("hierarchy(P.attr.l).size()", ERROR),  # a list with a non-string
        ('hierarchy("a").ancestorOf(P.attr.s)', ERROR),  # a string is not a hierarchy
    ],
)
def test_hierarchy(src: str, expected: Any) -> None:
    assert ev(src, x=1.0, l=["a", 1.0], s="a.b") == expected


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ('spiffeID("spiffe://example.org/ns/svc").path()', "/ns/svc"),
        ('spiffeID("spiffe://example.org").path()', ""),
        ('spiffeID("spiffe://example.org/a").trustDomain().name()', "example.org"),
        ('spiffeID("spiffe://example.org/a").trustDomain().id()', "spiffe://example.org"),
        ('spiffeID("spiffe://ex.org/a").isMemberOf(spiffeTrustDomain("ex.org"))', True),
        ('spiffeID("spiffe://ex.org/a").isMemberOf(spiffeTrustDomain("spiffe://ex.org"))', True),
        ('spiffeID("spiffe://ex.org/a").isMemberOf(spiffeTrustDomain("other.org"))', False),
        ('spiffeID("spiffe://ex.org/a") == spiffeID("spiffe://ex.org/a")', True),
        ('spiffeTrustDomain("ex.org") == spiffeID("spiffe://ex.org/a").trustDomain()', True),
        ('spiffeMatchAny().matchesID("spiffe://ex.org/a")', True),
        ('spiffeMatchExact("spiffe://ex.org/a").matchesID(spiffeID("spiffe://ex.org/a"))', True),
        ('spiffeMatchExact(spiffeID("spiffe://ex.org/a")).matchesID("spiffe://ex.org/b")', False),
        (
            'spiffeMatchOneOf(["spiffe://ex.org/a", "spiffe://ex.org/b"]).matchesID("spiffe://ex.org/b")',
            True,
        ),
        ('spiffeMatchOneOf([spiffeID("spiffe://ex.org/a")]).matchesID("spiffe://ex.org/b")', False),
        ("spiffeMatchOneOf([]).matchesID('spiffe://ex.org/b')", False),
        ('spiffeMatchTrustDomain("ex.org").matchesID("spiffe://ex.org/b")', True),
        (
            'spiffeMatchTrustDomain(spiffeTrustDomain("ex.org")).matchesID("spiffe://o.org/b")',
            False,
        ),
        # go-spiffe's validation: errors, not false.
        ('spiffeID("spiffe://Ex.org/a").path()', ERROR),
        ('spiffeID("spiffe://ex.org/a/").path()', ERROR),
        ('spiffeID("spiffe://ex.org//a").path()', ERROR),
        ('spiffeID("spiffe://ex.org/../a").path()', ERROR),
        ('spiffeID("spiffe://ex.org:1/a").path()', ERROR),
        ('spiffeID("http://ex.org/a").path()', ERROR),
        ('spiffeTrustDomain("").name()', ERROR),
        ('spiffeTrustDomain("ex.org/a").name()', ERROR),
        ('spiffeMatchAny().matchesID("not an id")', ERROR),
        ('spiffeMatchOneOf(["spiffe://ex.org/a", "bad"]).matchesID("spiffe://ex.org/a")', ERROR),
        ("spiffeMatchOneOf(P.attr.l).matchesID('spiffe://ex.org/a')", ERROR),
        ("id(P.attr.s)", "a.b"),
        ("id(2) + 1", 3),
    ],
)
def test_spiffe_and_id(src: str, expected: Any) -> None:
    assert ev(src, l=["spiffe://ex.org/a", 1.0], s="a.b") == expected


@pytest.mark.parametrize(
    "src",
    [
        'hierarchy("a") == spiffeID("spiffe://ex.org")',
        'hierarchy("a").ancestorOf(["a"])',
        'spiffeTrustDomain("ex.org").path()',
        'spiffeID("spiffe://ex.org").name()',
        "spiffeMatchAny().matchesID(1)",
        'hierarchy("a") + 1',
    ],
)
def test_types_are_kept_apart_by_the_checker(src: str) -> None:
    with pytest.raises(RuntimeError, match="no matching overload"):
        ENV.compile(src)


def test_dependencies_of_function_calls() -> None:
    assert dependencies("hierarchy(P.attr.scope).ancestorOf(hierarchy(R.attr.scope))") == (
        ("P", "attr", "scope"),
        ("R", "attr", "scope"),
    )
    assert dependencies("spiffeMatchAny().matchesID(spiffeID(P.attr.spiffe))") == (
        ("P", "attr", "spiffe"),
    )
    assert dependencies("spiffeID(P.attr.id).trustDomain().name() == G.td") == (
        ("P", "attr", "id"),
    )
    assert dependencies("id(R.id) == P.id") == (("P", "id"), ("R", "id"))
    # A global function the analysis does not know: the whole request.
    assert dependencies("unknownFn(P.attr.x)") is None
