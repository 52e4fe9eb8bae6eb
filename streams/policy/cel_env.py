"""The CEL environment Cerbos conditions run in, built once per engine.

Declares the Cerbos variables (`request`, `P`, `R`, `G`/`globals`, `runtime`; `V`/`C` are inlined
by the compiler) and the Cerbos function library as custom functions. `now()` and `timeSince()`
are declared here but bound per check, so one check sees one fixed `now`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_bindings, ext_encoders, ext_math, ext_strings

from .celcompat import ENTRIES_FN, PAIRS_FN, entries_to_map, pairs_to_map
from .substitute import UNDEFINED_FIELD_FN

VARIABLES = ("request", "P", "R", "G", "globals", "runtime")
TIME_FUNCTIONS = ("now", "timeSince")

_LIST = cel.Type.List(cel.Type.DYN)

# cel-cpp extensions that cel-expr-python 0.1.3 only exposes through an environment config.
_EXTENSIONS_CONFIG = cel.NewEnvConfigFromYaml(
    "extensions:\n"
    + "".join(
        f"  - name: {name}\n"
        for name in ("optional", "two-var-comprehensions", "lists", "sets", "regex")
    )
)


def _contains(items: list[Any], value: Any) -> bool:
    # CEL equality on plain values; lists may hold unhashable maps, so no set() here.
    return any(type(v) is type(value) and v == value for v in items) or (
        isinstance(value, float | int)
        and not isinstance(value, bool)
        and any(
            isinstance(v, float | int) and not isinstance(v, bool) and v == value for v in items
        )
    )


def has_intersection(a: list[Any], b: list[Any]) -> bool:
    return any(_contains(b, x) for x in a)


def intersect(a: list[Any], b: list[Any]) -> list[Any]:
    if len(a) > len(b):
        a, b = b, a
    return [x for x in a if _contains(b, x)]


def except_(a: list[Any], b: list[Any]) -> list[Any]:
    return [x for x in a if not _contains(b, x)]


def is_subset(a: list[Any], b: list[Any]) -> bool:
    return all(_contains(b, x) for x in a)


@lru_cache(maxsize=1024)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


def in_ip_addr_range(ip: str, cidr: str) -> bool:
    """`ip.inIPAddrRange(cidr)`; a malformed address or CIDR raises, i.e. a CEL error."""
    addr = ipaddress.ip_address(ip)
    net = _network(cidr)
    if addr.version != net.version:
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            return addr.ipv4_mapped in net
        return False
    return addr in net


# -- hierarchy() and SPIFFE --------------------------------------------------------------------
#
# Cerbos gives these functions opaque CEL types (`cerbos.lib.hierarchy`, `cerbos.lib.spiffeID`,
# `cerbos.lib.spiffeTrustDomain`, `cerbos.lib.spiffeMatcher`). cel-expr-python 0.1.3 cannot
# express that: a Python function declared to return `cel.Type.AbstractType(...)` fails at
# evaluation ("UNIMPLEMENTED: Unimplemented type: 13", opaque values cannot be built from
# Python), an AbstractType declared in a `CelExtension` type-checks as a free type parameter, and
# `size`/`_[_]` cannot be given new overloads ("function 'size' declared multiple times"). So each
# type is a map whose CEL type is unique to it, with keys request data can never have (JSON
# objects have string keys only):
#
#   hierarchy      map(int, string)          {0: "a", 1: "b", ...}  (size(), [i], == for free)
#   spiffeID       map(uint, string)         {_SID: "spiffe://td/path"}
#   trust domain   map(bool, string)         {True: "td"}
#   matcher        map(int, list(string))    {0: ["any"] | ["exact", id] | ["oneof", ids...]
#                                                 | ["td", name]}
#
# The checker therefore keeps the four types apart (and apart from strings and lists), and the
# implementations check the shape of their arguments, so a dyn value of the wrong kind is a
# runtime error as in Cerbos.

_SID = 1 << 40
HIERARCHY = cel.Type.Map(cel.Type.INT, cel.Type.STRING)
SPIFFE_ID = cel.Type.Map(cel.Type.UINT, cel.Type.STRING)
SPIFFE_TD = cel.Type.Map(cel.Type.BOOL, cel.Type.STRING)
SPIFFE_MATCHER = cel.Type.Map(cel.Type.INT, cel.Type.List(cel.Type.STRING))


class CelFunctionError(ValueError):
    """Raised by a custom function: evaluates to a CEL error."""


def undefined_field(name: str) -> Any:
    """A variable that failed to evaluate, read by an output: Cerbos leaves it out of `V`."""
    raise CelFunctionError(f"undefined field '{name}'")


def _as_hierarchy(v: Any) -> list[str]:
    if (
        type(v) is dict
        and all(type(k) is int for k in v)
        and all(type(x) is str for x in v.values())
    ):
        n = len(v)
        try:
            return [v[i] for i in range(n)]
        except KeyError:
            pass
    raise CelFunctionError("no such overload: expected a hierarchy")


def _hier(parts: list[str]) -> dict[int, str]:
    return dict(enumerate(parts))


def hierarchy(value: Any, delim: Any = None) -> dict[int, str]:
    """`hierarchy(string)`, `hierarchy(string, delimiter)` (Go `strings.Split`: an empty
    delimiter splits into characters, and `hierarchy("", "")` is empty), `hierarchy(list)`."""
    if delim is not None:
        if type(value) is not str or type(delim) is not str:
            raise CelFunctionError("no such overload")
        return _hier(list(value) if delim == "" else value.split(delim))
    if type(value) is str:
        return _hier(value.split("."))
    if type(value) is list:
        if not all(type(x) is str for x in value):
            raise CelFunctionError("failed to convert list to string slice")
        return _hier(list(value))
    raise CelFunctionError("no such overload")


def _prefix(short: list[str], long: list[str]) -> bool:
    return long[: len(short)] == short


def h_ancestor_of(h: Any, other: Any) -> bool:
    a, b = _as_hierarchy(h), _as_hierarchy(other)
    return len(b) > len(a) and _prefix(a, b)


def h_descendent_of(h: Any, other: Any) -> bool:
    return h_ancestor_of(other, h)


def h_immediate_parent_of(h: Any, other: Any) -> bool:
    a, b = _as_hierarchy(h), _as_hierarchy(other)
    return len(b) == len(a) + 1 and _prefix(a, b)


def h_immediate_child_of(h: Any, other: Any) -> bool:
    return h_immediate_parent_of(other, h)


def h_sibling_of(h: Any, other: Any) -> bool:
    a, b = _as_hierarchy(h), _as_hierarchy(other)
    return len(a) == len(b) and a[:-1] == b[:-1]


def h_overlaps(h: Any, other: Any) -> bool:
    a, b = _as_hierarchy(h), _as_hierarchy(other)
    return _prefix(a, b) if len(a) <= len(b) else _prefix(b, a)


def h_common_ancestors(h: Any, other: Any) -> dict[int, str]:
    """Cerbos: the common prefix; for equal lengths the last element is left out first."""
    a, b = _as_hierarchy(h), _as_hierarchy(other)
    short, long = (b, a) if len(b) < len(a) else (a, b)
    if len(long) == len(short):
        if not long:
            raise CelFunctionError("commonAncestors of empty hierarchies")
        long, short = long[:-1], short[:-1]
    out: list[str] = []
    for x, y in zip(short, long, strict=False):
        if x != y:
            break
        out.append(x)
    return _hier(out)


_TD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_PATH_CHARS = _TD_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME = "spiffe://"


def _parse_spiffe_id(s: str) -> tuple[str, str]:
    """(trust domain, path) of a SPIFFE ID, with go-spiffe v2's `spiffeid.FromString` rules."""
    if s == "":
        raise CelFunctionError("cannot be empty")
    if not s.startswith(_SCHEME):
        raise CelFunctionError("scheme is missing or invalid")
    i = len(_SCHEME)
    while i < len(s) and s[i] != "/":
        if s[i] not in _TD_CHARS:
            raise CelFunctionError(
                "trust domain characters are limited to lowercase letters, numbers, dots, "
                "dashes, and underscores"
            )
        i += 1
    if i == len(_SCHEME):
        raise CelFunctionError("trust domain is missing")
    td, path = s[len(_SCHEME) : i], s[i:]
    _validate_path(path)
    return td, path


def _validate_path(path: str) -> None:
    if path == "":
        return
    segments = path.split("/")[1:]  # path starts with "/"
    for n, seg in enumerate(segments):
        if seg == "":
            raise CelFunctionError(
                "path cannot have a trailing slash"
                if n == len(segments) - 1
                else "path cannot contain empty segments"
            )
        if seg in (".", ".."):
            raise CelFunctionError("path cannot contain dot segments")
        if any(c not in _PATH_CHARS for c in seg):
            raise CelFunctionError(
                "path segment characters are limited to letters, numbers, dots, dashes, and "
                "underscores"
            )


def _parse_trust_domain(s: str) -> str:
    """go-spiffe `spiffeid.TrustDomainFromString`: a name, or a SPIFFE ID (contains `:/`)."""
    if s == "":
        raise CelFunctionError("trust domain is missing")
    if ":/" in s:
        return _parse_spiffe_id(s)[0]
    if any(c not in _TD_CHARS for c in s):
        raise CelFunctionError(
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, "
            "and underscores"
        )
    return s


def _as_id(v: Any) -> str:
    if type(v) is dict and len(v) == 1:
        ((k, x),) = v.items()
        if k == _SID and type(k) is int and type(x) is str:
            return x
    raise CelFunctionError("no such overload: expected a spiffeID")


def _as_td(v: Any) -> str:
    if type(v) is dict and len(v) == 1:
        ((k, x),) = v.items()
        if k is True and type(x) is str:
            return x
    raise CelFunctionError("no such overload: expected a spiffeTrustDomain")


def _as_matcher(v: Any) -> list[str]:
    if type(v) is dict and len(v) == 1:
        ((k, x),) = v.items()
        if k == 0 and type(k) is int and type(x) is list and x and x[0] in _MATCHERS:
            return x
    raise CelFunctionError("no such overload: expected a spiffeMatcher")


_MATCHERS = frozenset({"any", "exact", "oneof", "td"})


def spiffe_id(s: str) -> dict[int, str]:
    try:
        _parse_spiffe_id(s)
    except CelFunctionError as exc:
        raise CelFunctionError(f"failed to parse SPIFFE ID: {exc}") from None
    return {_SID: s}


def spiffe_trust_domain(s: str) -> dict[bool, str]:
    try:
        return {True: _parse_trust_domain(s)}
    except CelFunctionError as exc:
        raise CelFunctionError(f"failed to parse SPIFFE trust domain: {exc}") from None


def spiffe_is_member_of(sid: Any, td: Any) -> bool:
    return _parse_spiffe_id(_as_id(sid))[0] == _as_td(td)


def spiffe_path(sid: Any) -> str:
    return _parse_spiffe_id(_as_id(sid))[1]


def spiffe_id_trust_domain(sid: Any) -> dict[bool, str]:
    return {True: _parse_spiffe_id(_as_id(sid))[0]}


def spiffe_td_name(td: Any) -> str:
    return _as_td(td)


def spiffe_td_id(td: Any) -> str:
    return _SCHEME + _as_td(td)


def _id_string(v: Any) -> str:
    if type(v) is str:
        return spiffe_id(v)[_SID]
    return _as_id(v)


def spiffe_match_any() -> dict[int, list[str]]:
    return {0: ["any"]}


def spiffe_match_exact(v: Any) -> dict[int, list[str]]:
    return {0: ["exact", _id_string(v)]}


def spiffe_match_one_of(items: Any) -> dict[int, list[str]]:
    """A list of spiffeIDs, or of strings that all parse as SPIFFE IDs (else an error)."""
    if type(items) is not list:
        raise CelFunctionError("no such overload")
    if all(type(x) is dict for x in items):
        return {0: ["oneof", *(_as_id(x) for x in items)]}
    if all(type(x) is str for x in items):
        ids = []
        for x in items:
            try:
                _parse_spiffe_id(x)
            except CelFunctionError:
                raise CelFunctionError("no such overload") from None
            ids.append(x)
        return {0: ["oneof", *ids]}
    raise CelFunctionError("no such overload")


def spiffe_match_trust_domain(v: Any) -> dict[int, list[str]]:
    td = spiffe_trust_domain(v)[True] if type(v) is str else _as_td(v)
    return {0: ["td", td]}


def spiffe_matches_id(matcher: Any, v: Any) -> bool:
    m = _as_matcher(matcher)
    if type(v) is str:
        try:
            _parse_spiffe_id(v)
        except CelFunctionError as exc:
            raise CelFunctionError(f"invalid SPIFFE ID: {exc}") from None
        sid = v
    else:
        sid = _as_id(v)
    kind = m[0]
    if kind == "any":
        return True
    if kind == "exact":
        return sid == m[1]
    if kind == "oneof":
        return sid in m[1:]
    return _parse_spiffe_id(sid)[0] == m[1]


def identity(value: Any) -> Any:
    """Cerbos `id(x)`: returns its argument."""
    return value


def _fn(name: str, *overloads: cel.Overload) -> cel.FunctionDecl:
    return cel.FunctionDecl(name, list(overloads))


def _hierarchy_decls() -> list[cel.FunctionDecl]:
    s, b = cel.Type.STRING, cel.Type.BOOL
    decls = [
        _fn(
            "hierarchy",
            cel.Overload("hierarchy_string", HIERARCHY, [s], False, hierarchy),
            cel.Overload("hierarchy_string_string", HIERARCHY, [s, s], False, hierarchy),
            cel.Overload("hierarchy_stringarray", HIERARCHY, [cel.Type.List(s)], False, hierarchy),
        )
    ]
    for name, impl in (
        ("ancestorOf", h_ancestor_of),
        ("descendentOf", h_descendent_of),
        ("immediateChildOf", h_immediate_child_of),
        ("immediateParentOf", h_immediate_parent_of),
        ("overlaps", h_overlaps),
        ("siblingOf", h_sibling_of),
    ):
        decls.append(_fn(name, cel.Overload(name, b, [HIERARCHY, HIERARCHY], True, impl)))
    decls.append(
        _fn(
            "commonAncestors",
            cel.Overload(
                "commonAncestors", HIERARCHY, [HIERARCHY, HIERARCHY], True, h_common_ancestors
            ),
        )
    )
    return decls


def _spiffe_decls() -> list[cel.FunctionDecl]:
    s, b, m = cel.Type.STRING, cel.Type.BOOL, SPIFFE_MATCHER
    return [
        _fn("spiffeID", cel.Overload("spiffeID_string", SPIFFE_ID, [s], False, spiffe_id)),
        _fn(
            "spiffeTrustDomain",
            cel.Overload("spiffeTrustDomain_string", SPIFFE_TD, [s], False, spiffe_trust_domain),
        ),
        _fn("spiffeMatchAny", cel.Overload("spiffeMatchAny", m, [], False, spiffe_match_any)),
        _fn(
            "spiffeMatchExact",
            cel.Overload("spiffeMatchExact_spiffeID", m, [SPIFFE_ID], False, spiffe_match_exact),
            cel.Overload("spiffeMatchExact_string", m, [s], False, spiffe_match_exact),
        ),
        # One overload: list(spiffeID) and list(string) are the same runtime shape (a list),
        # and cel-expr-python rejects two implementations for one shape.
        _fn(
            "spiffeMatchOneOf",
            cel.Overload(
                "spiffeMatchOneOf_list",
                m,
                [cel.Type.List(cel.Type.DYN)],
                False,
                spiffe_match_one_of,
            ),
        ),
        _fn(
            "spiffeMatchTrustDomain",
            cel.Overload(
                "spiffeMatchTrustDomain_spiffeTrustDomain",
                m,
                [SPIFFE_TD],
                False,
                spiffe_match_trust_domain,
            ),
            cel.Overload("spiffeMatchTrustDomain_string", m, [s], False, spiffe_match_trust_domain),
        ),
        _fn(
            "isMemberOf",
            cel.Overload("isMemberOf", b, [SPIFFE_ID, SPIFFE_TD], True, spiffe_is_member_of),
        ),
        _fn("path", cel.Overload("path", s, [SPIFFE_ID], True, spiffe_path)),
        _fn(
            "trustDomain",
            cel.Overload("trustDomain", SPIFFE_TD, [SPIFFE_ID], True, spiffe_id_trust_domain),
        ),
        _fn("name", cel.Overload("name", s, [SPIFFE_TD], True, spiffe_td_name)),
        _fn(
            "id",
            cel.Overload("id_overload", cel.Type.DYN, [cel.Type.DYN], False, identity),
            cel.Overload("id", s, [SPIFFE_TD], True, spiffe_td_id),
        ),
        _fn(
            "matchesID",
            cel.Overload("matchesID_spiffeID", b, [m, SPIFFE_ID], True, spiffe_matches_id),
            cel.Overload("matchesID_string", b, [m, s], True, spiffe_matches_id),
        ),
    ]


def _set_fn(name: str, impl: Callable[..., Any], ret: cel.Type) -> list[cel.FunctionDecl]:
    decls = []
    for fn_name in (name,):
        decls.append(
            cel.FunctionDecl(
                fn_name,
                [
                    cel.Overload(f"{fn_name}_list_list", ret, [_LIST, _LIST], False, impl),
                    cel.Overload(f"{fn_name}_member_list_list", ret, [_LIST, _LIST], True, impl),
                ],
            )
        )
    return decls


def cerbos_extension() -> cel.CelExtension:
    """Cerbos' own CEL functions (hasIntersection, intersect, except, isSubset, inIPAddrRange,
    now, timeSince, id, hierarchy and its members, the SPIFFE functions), including the
    deprecated snake_case aliases."""
    decls: list[cel.FunctionDecl] = []
    decls += _set_fn("hasIntersection", has_intersection, cel.Type.BOOL)
    decls += _set_fn("has_intersection", has_intersection, cel.Type.BOOL)
    decls += _set_fn("intersect", intersect, _LIST)
    decls += _set_fn("except", except_, _LIST)
    decls += _set_fn("isSubset", is_subset, cel.Type.BOOL)
    decls += _set_fn("is_subset", is_subset, cel.Type.BOOL)
    decls.append(
        cel.FunctionDecl(
            "inIPAddrRange",
            [
                cel.Overload(
                    "inIPAddrRange_string",
                    cel.Type.BOOL,
                    [cel.Type.STRING, cel.Type.STRING],
                    True,
                    in_ip_addr_range,
                )
            ],
        )
    )
    decls.append(
        cel.FunctionDecl("now", [cel.Overload("now", cel.Type.TIMESTAMP, [], False)]),
    )
    decls.append(
        cel.FunctionDecl(
            "timeSince",
            [
                cel.Overload("timeSince_overload", cel.Type.DURATION, [cel.Type.TIMESTAMP], False),
                cel.Overload(
                    "timeSince_member_overload", cel.Type.DURATION, [cel.Type.TIMESTAMP], True
                ),
            ],
        )
    )
    decls += _hierarchy_decls()
    decls += _spiffe_decls()
    # what transformMap/transformMapEntry are rewritten into (celcompat.py)
    any_map = cel.Type.Map(cel.Type.DYN, cel.Type.DYN)
    decls.append(
        cel.FunctionDecl(PAIRS_FN, [cel.Overload(PAIRS_FN, any_map, [_LIST], True, pairs_to_map)])
    )
    entries = cel.Type.List(any_map)
    decls.append(
        cel.FunctionDecl(
            ENTRIES_FN, [cel.Overload(ENTRIES_FN, any_map, [entries], True, entries_to_map)]
        )
    )
    # an output's reference to a variable that failed (substitute.py)
    decls.append(
        cel.FunctionDecl(
            UNDEFINED_FIELD_FN,
            [
                cel.Overload(
                    UNDEFINED_FIELD_FN, cel.Type.DYN, [cel.Type.STRING], False, undefined_field
                )
            ],
        )
    )
    return cel.CelExtension("cerbos", decls)


def new_env() -> cel.Env:
    """One environment per engine: compiling is the expensive part and happens once."""
    return cel.NewEnv(
        config=_EXTENSIONS_CONFIG,
        variables={name: cel.Type.DYN for name in VARIABLES},
        extensions=[
            ext_strings.ExtStrings(),
            ext_math.ExtMath(),
            ext_encoders.ExtEncoders(),
            ext_bindings.ExtBindings(),
            cerbos_extension(),
        ],
    )


def time_functions(now: dt.datetime) -> list[cel.Function]:
    """Per-check bindings of `now()` and `timeSince()` to one fixed instant."""
    return clock_functions(lambda: now)


def clock_functions(clock: Callable[[], dt.datetime]) -> list[cel.Function]:
    """`now()` and `timeSince()` reading the instant from `clock()` at each call (the engine
    binds them once and points `clock` at the current check's fixed `now`)."""

    def _now() -> dt.datetime:
        return clock()

    def _since(ts: dt.datetime) -> dt.timedelta:
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        return clock() - ts

    return [
        cel.Function("now", [], False, _now, cel.Type.TIMESTAMP),
        cel.Function("timeSince", [cel.Type.TIMESTAMP], False, _since, cel.Type.DURATION),
        cel.Function("timeSince", [cel.Type.TIMESTAMP], True, _since, cel.Type.DURATION),
    ]


def to_cel_data(value: Any) -> Any:
    """JSON-like value as Cerbos sees it: every number is a double (protobuf `Value`)."""
    t = type(value)
    if t is dict:
        return _dict_to_cel(value)
    if t is list or t is tuple:
        return [to_cel_data(v) for v in value]
    if t is int:
        return float(value)
    if t is str or t is float or t is bool or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: to_cel_data(v) for k, v in value.items()}
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return float(value)
    return value


def _dict_to_cel(d: dict[Any, Any]) -> dict[Any, Any]:
    # Same result as the generic path, without a call per scalar (the common case).
    out = {}
    for k, v in d.items():
        t = type(v)
        if t is str or t is bool or t is float or v is None:
            out[k] = v
        elif t is dict:
            out[k] = _dict_to_cel(v)
        elif t is int:
            out[k] = float(v)
        else:
            out[k] = to_cel_data(v)
    return out
