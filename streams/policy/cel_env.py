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

VARIABLES = ("request", "P", "R", "G", "globals", "runtime")
TIME_FUNCTIONS = ("now", "timeSince")

_LIST = cel.Type.List(cel.Type.DYN)


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
    now, timeSince), including the deprecated snake_case aliases."""
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
    return cel.CelExtension("cerbos", decls)


def new_env() -> cel.Env:
    """One environment per engine: compiling is the expensive part and happens once."""
    return cel.NewEnv(
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
