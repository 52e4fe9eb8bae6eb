"""PlanResources: Cerbos's query planner (0.55) over Vigil's compiled bundle.

A plan answers "which resources of this kind may the principal do this action on?" as a filter
over resource attributes: ``KIND_ALWAYS_ALLOWED``, ``KIND_ALWAYS_DENIED`` or ``KIND_CONDITIONAL``
with Cerbos's operand tree (``{"expression": {"operator", "operands"}}``, ``{"variable"}``,
``{"value"}``). PEPs turn these trees into SQL, so the *shape* is the contract: this module follows
the stock planner step by step (rule rows per role and scope, derived-role conjunctions, the
allow/deny combination, then its conversion and normalisation of the tree) rather than producing
some equivalent formula.

Partial evaluation works on the parsed CEL AST (the ``ParsedExpr`` the CEL runtime serializes):
every maximal subexpression that reads nothing unknown (the resource beyond its kind, scope and
the attributes given in the request) is evaluated by the same CEL runtime and environment the
checks use, and becomes a constant; ``&&``, ``||``, ``!`` and ``?:`` are simplified around
constants as cel-go's residual pruning does. No second CEL interpreter: only the unknown parts
are kept as syntax.

What the planner does not reproduce is refused with `PlanUnsupported` (the HTTP layer answers
501 with the reason), never approximated: see docs/check-api.md, "Query plans".
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cel_expr_python import cel
from google.api.expr.v1alpha1 import syntax_pb2
from google.api.expr.v1alpha1.syntax_pb2 import Expr
from google.protobuf import any_pb2

from .api import RequestError, parse_plan_request, to_json_value, verified_aux_data
from .auxdata import NO_KEY_SETS, AuxDataVerifier
from .compiler import OVERRIDE_PARENT, REQUIRE_PARENTAL_CONSENT
from .engine import PolicyEngine, _Check, lookup_scope
from .model import Condition, DerivedRole, PrincipalPolicy, ResourcePolicy, Rule

Operand = dict[str, Any]  # {"expression": {...}} | {"variable": str} | {"value": Any}

_PARSED_URL = "type.googleapis.com/cel.expr.ParsedExpr"

#: CEL function -> Cerbos operator name (ast.go opFromCLE); others keep their function name.
_OPERATORS = {
    "_==_": "eq",
    "_!=_": "ne",
    "_>_": "gt",
    "_>=_": "ge",
    "_<_": "lt",
    "_<=_": "le",
    "@in": "in",
    "_+_": "add",
    "_-_": "sub",
    "_*_": "mult",
    "_/_": "div",
    "_%_": "mod",
    "_[_]": "index",
    "_&&_": "and",
    "_||_": "or",
    "!_": "not",
    "_?_:_": "if",
}


class PlanUnsupported(Exception):
    """A plan Vigil cannot produce exactly as Cerbos would; the message says why."""


# -- plan nodes (Cerbos's PlanResourcesAst): ("lo", "and"|"or"|"not", [nodes]) | ("expr", R) ---
# Residual expressions R: ("const", value) | ("ident", name) | ("select", R, field, test_only)
# | ("call", fn, target R | None, [R]) | ("list", [R]) | ("map", [(R, R)])

Node = tuple[Any, ...]
TRUE: Node = ("expr", ("const", True))
FALSE: Node = ("expr", ("const", False))


def _lo(op: str, nodes: list[Node]) -> Node:
    return ("lo", op, nodes)


def _const_bool(node: Node) -> bool | None:
    if node[0] == "expr" and node[1][0] == "const" and isinstance(node[1][1], bool):
        return bool(node[1][1])
    return None


def _invert(node: Node) -> Node:
    """planner.go invertNodeBooleanValue: NOT, stripping an existing NOT."""
    if node[0] == "lo" and node[1] == "not":
        nodes = node[2]
        return nodes[0] if len(nodes) == 1 else _lo("and", list(nodes))
    return _lo("not", [node])


# -- partial evaluation ------------------------------------------------------------------------


def _parse(env: cel.Env, source: str) -> Expr:
    program = env.compile(source, disable_check=True)
    wrapped = any_pb2.Any.FromString(program.serialize())
    return syntax_pb2.ParsedExpr.FromString(wrapped.value).expr


def _chain(e: Expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"] when `e` is a chain of field selections on an identifier."""
    parts: list[str] = []
    while e.WhichOneof("expr_kind") == "select_expr":
        if e.select_expr.test_only:
            return None
        parts.append(e.select_expr.field)
        e = e.select_expr.operand
    if e.WhichOneof("expr_kind") != "ident_expr":
        return None
    parts.append(e.ident_expr.name)
    return parts[::-1]


@dataclass
class _Partial:
    """Partial evaluator of one plan request (known: the principal, globals, now, and of the
    resource its kind, scope and the attributes given)."""

    env: cel.Env
    activation: Any
    known_attrs: frozenset[str]
    cache: dict[bytes, Any] = field(default_factory=dict)
    #: iteration variables of the macros being planned (unknown inside their bodies)
    lambda_vars: frozenset[str] = frozenset()
    memo: dict[tuple[int, frozenset[str]], tuple[Expr, bool]] = field(default_factory=dict)

    def _resource_known(self, rest: list[str]) -> bool:
        if rest in (["kind"], ["scope"]):
            return True
        return len(rest) >= 2 and rest[0] == "attr" and rest[1] in self.known_attrs

    def unknown(self, e: Expr, bound: frozenset[str] = frozenset()) -> bool:
        """Whether `e` reads something unknown (memoised for this request; the entry keeps
        `e` alive so that its id is not reused)."""
        key = (id(e), bound)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = (e, self._unknown(e, bound))
        return hit[1]

    def _unknown(self, e: Expr, bound: frozenset[str] = frozenset()) -> bool:
        kind = e.WhichOneof("expr_kind")
        if kind == "const_expr":
            return False
        if kind == "ident_expr":
            name = e.ident_expr.name
            return name not in bound and (name in ("R", "request") or name in self.lambda_vars)
        if kind == "select_expr":
            if self._has_given(e):
                return True  # see `residual`
            parts = _chain(e)
            if parts is not None and parts[0] not in bound:
                if parts[0] in self.lambda_vars:
                    return True
                if parts[0] == "R":
                    return not self._resource_known(parts[1:])
                if parts[0] == "request" and parts[1] == "resource":
                    return not self._resource_known(parts[2:])
                if parts[0] == "request":
                    return False
            return self.unknown(e.select_expr.operand, bound)
        if kind == "call_expr":
            c = e.call_expr
            if c.HasField("target") and self.unknown(c.target, bound):
                return True
            return any(self.unknown(a, bound) for a in c.args)
        if kind == "list_expr":
            return any(self.unknown(x, bound) for x in e.list_expr.elements)
        if kind == "struct_expr":
            return any(
                (x.HasField("map_key") and self.unknown(x.map_key, bound))
                or self.unknown(x.value, bound)
                for x in e.struct_expr.entries
            )
        if kind == "comprehension_expr":
            c2 = e.comprehension_expr
            inner = bound | {c2.iter_var, c2.accu_var}
            return self.unknown(c2.iter_range, bound) or any(
                self.unknown(x, inner)
                for x in (c2.accu_init, c2.loop_condition, c2.loop_step, c2.result)
            )
        raise PlanUnsupported(f"unsupported CEL expression kind {kind}")

    def _has_given(self, e: Expr) -> bool:
        """Whether `e` is `has(R.attr.k)` for an attribute `k` given in the request. The stock
        planner declares each given attribute as a variable named `R.attr.k`, and cel-go's
        presence test on a name that is a variable answers the variable's value (measured:
        `has(R.attr.public)` is `R.attr.public`); see `_has_given_value`."""
        if e.WhichOneof("expr_kind") != "select_expr" or not e.select_expr.test_only:
            return False
        if e.select_expr.field not in self.known_attrs:
            return False
        return _chain(e.select_expr.operand) in (["R", "attr"], ["request", "resource", "attr"])

    def _has_given_value(self, e: Expr) -> Any:
        """`has(R.attr.k)` of a given attribute: its value when a boolean; any other value
        acts as an error (measured: beside constants, and vanishing beside unknown parts)."""
        read = Expr()
        read.CopyFrom(e)
        read.select_expr.test_only = False
        value = self.evaluate(read).value()
        if isinstance(value, bool):
            return ("const", value)
        return ("error", "has() on a given resource attribute", True)

    def evaluate(self, e: Expr) -> Any:
        """The value of a known subexpression, by the checks' CEL runtime (a `cel.Value`)."""
        key = e.SerializeToString(deterministic=True)
        program = self.cache.get(key)
        if program is None:
            parsed = syntax_pb2.ParsedExpr(expr=e).SerializeToString()
            wrapped = any_pb2.Any(type_url=_PARSED_URL, value=parsed).SerializeToString()
            if len(self.cache) > 10_000:  # shared by the plans of one bundle: bounded
                self.cache.clear()
            program = self.cache[key] = self.env.deserialize(wrapped)
        try:
            return program.eval(self.activation)
        except Exception as exc:  # a custom function raised: an error value in CEL
            raise PlanUnsupported(f"evaluation failed: {exc}") from None

    def fold(self, e: Expr) -> Any:
        value = self.evaluate(e)
        if value.type() == cel.Type.ERROR:
            return ("error", str(value.value()), False)
        return _literal(value.plain_value())

    def root(self, e: Expr, unknown: bool | None = None) -> Any:
        """planner.go evaluateConditionExpression: a known expression is its boolean value
        (anything else, errors included, is false); otherwise the residual expression.
        `unknown`: whether `e` reads anything unknown, when the caller knows already."""
        if not (self.unknown(e) if unknown is None else unknown):
            value = self.evaluate(e)
            v = value.value()
            return ("const", v is True) if isinstance(v, bool) else ("const", False)
        r = self.residual(e)
        if r[0] == "error" or (r[0] == "const" and not isinstance(r[1], bool)):
            return ("const", False)
        return r

    def residual(self, e: Expr) -> Any:
        if not self.unknown(e):
            return self.fold(e)
        kind = e.WhichOneof("expr_kind")
        if kind == "ident_expr":
            return ("ident", e.ident_expr.name)
        if kind == "select_expr":
            if self._has_given(e):
                return self._has_given_value(e)
            s = e.select_expr
            operand = self.residual(s.operand)
            if operand[0] == "error":
                return operand
            return ("select", operand, s.field, s.test_only)
        if kind == "list_expr":
            items = [self.residual(x) for x in e.list_expr.elements]
            return _first_error(items) or ("list", items)
        if kind == "struct_expr":
            if e.struct_expr.message_name:
                raise PlanUnsupported("message construction in a condition")
            entries = []
            for x in e.struct_expr.entries:
                if not x.HasField("map_key"):
                    raise PlanUnsupported("message field in a condition")
                entries.append((self.residual(x.map_key), self.residual(x.value)))
            return _first_error([r for kv in entries for r in kv]) or ("map", entries)
        if kind == "comprehension_expr":
            return self._lambda(e)
        return self._call(e)

    def _lambda(self, e: Expr) -> Any:
        """A macro over an unknown range as Cerbos's `lambda` operand (lambda.go): the loop
        step's predicate (or mapped value) is planned with the iteration variable unknown."""
        c = e.comprehension_expr
        if c.iter_var2:
            raise PlanUnsupported("two-variable macros")
        step = c.loop_step
        if step.WhichOneof("expr_kind") != "call_expr":
            raise PlanUnsupported("an unexpected macro shape")
        fn = step.call_expr.function
        args = list(step.call_expr.args)
        first = args[0] if args else None
        index = (
            1
            if first is not None
            and first.WhichOneof("expr_kind") == "ident_expr"
            and first.ident_expr.name == c.accu_var
            else 0
        )
        if not self.unknown(c.iter_range):
            return self._known_range(c, fn, args[index])
        inner = _Partial(
            self.env, self.activation, self.known_attrs, self.cache, self.lambda_vars | {c.iter_var}
        )
        body = inner.residual(args[index])
        if fn == "_&&_":
            op = "all"
        elif fn == "_||_":
            op = "exists"
        elif fn == "_+_":
            op = "map"
            elements = body[1] if body[0] == "list" else []
            if not elements:
                raise PlanUnsupported("an unexpected map macro shape")
            body = elements[0]
        elif fn == "_?_:_":
            init = c.accu_init.WhichOneof("expr_kind")
            if init == "const_expr":
                op = "exists_one"
            elif init == "list_expr":
                added = args[1].call_expr.args[1].list_expr.elements
                if not added or added[0].WhichOneof("expr_kind") == "call_expr":
                    raise PlanUnsupported("map() with a filter predicate")
                op = "filter"
            else:
                raise PlanUnsupported("an unexpected macro shape")
        else:
            raise PlanUnsupported(f"an unexpected macro step {fn}")
        if body[0] in ("error", "const"):
            raise PlanUnsupported("a macro whose body does not depend on its variable")
        return ("lambda", op, self.residual(c.iter_range), body, c.iter_var)

    def _known_range(self, c: Any, fn: str, body: Expr) -> Any:
        """A macro over a known list whose body reads the resource, as measured on the stock
        planner: `exists`/`all` unrolled into a right-nested `or`/`and` of the body for each
        element; `exists_one` kept as a `lambda` over the list value."""
        items = self.fold(c.iter_range)
        if items[0] == "error":
            return items
        if items[0] != "list":
            raise PlanUnsupported("a macro over a known value that is not a list")
        if not items[1]:  # no iteration: the body is never evaluated, the result is known
            if fn in ("_||_", "_&&_"):
                return ("const", fn == "_&&_")
            if fn == "_?_:_" and c.accu_init.WhichOneof("expr_kind") == "const_expr":
                return ("const", False)  # exists_one
            return ("list", [])  # filter, map
        if fn == "_?_:_" and c.accu_init.WhichOneof("expr_kind") == "const_expr":
            inner = _Partial(
                self.env,
                self.activation,
                self.known_attrs,
                self.cache,
                self.lambda_vars | {c.iter_var},
            )
            pred = inner.residual(body)
            if pred[0] in ("error", "const"):
                raise PlanUnsupported("a macro whose body does not depend on its variable")
            return ("lambda", "exists_one", items, pred, c.iter_var)
        if fn not in ("_||_", "_&&_"):
            raise PlanUnsupported(
                "filter() or map() over a known list whose body reads the resource"
            )
        parts = [self.residual(_substitute(body, c.iter_var, _literal_expr(v))) for v in items[1]]
        if not parts:
            return ("const", fn == "_&&_")
        out = parts[-1]
        for part in reversed(parts[:-1]):
            out = self._logical(fn, part, out)
        return out

    def _logical(self, fn: str, left: Any, right: Any) -> Any:
        """`left && right` / `left || right` around known values, as cel-go prunes them."""
        absorbing = fn == "_||_"  # true absorbs ||, false absorbs &&
        for side, other in ((left, right), (right, left)):
            if side[0] == "const" and isinstance(side[1], bool):
                return side if side[1] is absorbing else other
        for side, other in ((left, right), (right, left)):
            if side[0] == "error":
                if side[2] and other[0] != "error":
                    return other
                raise PlanUnsupported(
                    "a part of a condition that does not read the resource fails beside "
                    f"one that does ({side[1]}); the stock planner's answer then depends "
                    "on Go map order"
                )
        for side in (left, right):
            if side[0] == "const":
                raise PlanUnsupported(f"a non-boolean operand of {fn}")
        return ("call", fn, None, [left, right])

    def _index(self, target: Expr, key: Expr) -> Any:
        """`target[key]` where `target` is a cel-go attribute rooted at `R` or `request` and
        `key` is known but not a literal, as cel-go's partial attributes treat it
        (attribute_patterns.go matchesUnknownPatterns): the key is resolved before the
        attribute is matched against the unknown resource. A key that fails, or whose value
        is not a string, int, uint, bool or double ("invalid qualifier type"), makes the
        attribute an error although it reads the unknown resource; a key that is itself an
        attribute (`P.attr.dept`) is resolved without its value being recorded, so the
        residual keeps it as written. None: the key is an ordinary known subexpression."""
        if key.WhichOneof("expr_kind") == "const_expr":
            if key.const_expr.WhichOneof("constant_kind") in ("null_value", "bytes_value"):
                # cel-go refuses to build the program: the stock PDP fails the whole plan
                raise PlanUnsupported("an index into the resource by a literal that is not a key")
            return None
        if self.unknown(key):
            return None
        value = self.evaluate(key)
        bare = _strip_dyn(key)
        literal = bare.WhichOneof("expr_kind") == "const_expr"
        if literal:
            # Vigil inlines a constant as `dyn(<literal>)`: the stock planner keeps `C.name`
            # (an attribute) there, but inlines a variable that is a literal as that literal
            # (and fails the whole plan on a literal that is not a key); not told apart
            raise PlanUnsupported("an index into the resource by a constant or literal variable")
        t = value.type()
        if t not in _QUALIFIER_TYPES:
            reason = str(value.value()) if t == cel.Type.ERROR else "invalid qualifier type"
            return ("error", reason, False)
        if _attribute_root(bare) is None or self._given_attribute(bare):
            return None  # evaluated by the stock planner (recorded, pruned to its value)
        if not _plain_keys(bare):
            raise PlanUnsupported("a computed index inside the key of an index into the resource")
        operand = self.residual(target)
        if operand[0] == "error":
            return operand
        return ("call", "_[_]", None, [operand, _raw(bare)])

    def _given_attribute(self, e: Expr) -> bool:
        """Whether the attribute `e` reads a resource attribute given in the request (the
        stock planner wraps those in an identity call: a computed key, pruned to its value)."""
        parts = _chain(e) or []
        if parts[:1] == ["R"]:
            return len(parts) >= 3 and parts[1] == "attr"
        return len(parts) >= 4 and parts[:3] == ["request", "resource", "attr"]

    def _in_guard(self, args: Sequence[Expr]) -> Any:
        """Known operands: the guard decides (cel-go's answer); otherwise the plain `A in B`,
        the expression Cerbos's planner sees."""
        try:
            cond = self.residual(args[0])
        except PlanUnsupported:
            cond = None
        if cond is not None and cond[0] == "const" and isinstance(cond[1], bool):
            return self.residual(args[1] if cond[1] else args[2])
        return self.residual(args[2])

    def _call(self, e: Expr) -> Any:
        c = e.call_expr
        fn = c.function
        args = list(c.args)
        if fn == "dyn" and len(args) == 1 and not c.HasField("target"):
            return self.residual(args[0])  # Vigil's inlining wraps variables in dyn()
        if fn == "_?_:_":
            guarded = _has_guard(args)
            if guarded is not None:
                return self.residual(guarded)
            if _is_in_guard(args):
                return self._in_guard(args)
            cond = self.residual(args[0])
            if cond[0] == "error":
                return cond
            if cond[0] == "const" and isinstance(cond[1], bool):
                return self.residual(args[1] if cond[1] else args[2])
            if cond[0] == "const":
                return ("error", "a conditional over a value that is not a boolean", False)
            if _bool_of(_normalise(_operand(cond))) is not None:
                # measured: `R.attr.x in [] ? a : b` is `b` as written; not reproduced
                raise PlanUnsupported("a conditional whose condition the normalisation decides")
            # cel-go evaluates neither branch of a conditional over an unknown: its residual
            # keeps both as written (known parts not folded)
            return ("call", fn, None, [cond, _raw(args[1]), _raw(args[2])])
        if fn in ("_&&_", "_||_"):
            return self._logical(fn, self.residual(args[0]), self.residual(args[1]))
        if fn == "_[_]" and len(args) == 2 and _attribute_root(args[0]) in ("R", "request"):
            indexed = self._index(args[0], args[1])
            if indexed is not None:
                return indexed
        if fn == "!_":
            inner = self.residual(args[0])
            if inner[0] == "const" and isinstance(inner[1], bool):
                return ("const", not inner[1])
            if inner[0] == "error":
                return inner
            return ("call", fn, None, [inner])
        target = self.residual(c.target) if c.HasField("target") else None
        operands = [self.residual(a) for a in args]
        found = _first_error([target, *operands] if target is not None else operands)
        return found or ("call", fn, target, operands)


_QUALIFIER_TYPES = (cel.Type.STRING, cel.Type.INT, cel.Type.UINT, cel.Type.BOOL, cel.Type.DOUBLE)


def _attribute_root(e: Expr) -> str | None:
    """The identifier a cel-go attribute (`a.b[k].c`: field selections and indexes on an
    identifier) starts from; None when `e` is not such a chain."""
    while True:
        kind = e.WhichOneof("expr_kind")
        if kind == "ident_expr":
            return e.ident_expr.name
        if kind == "select_expr" and not e.select_expr.test_only:
            e = e.select_expr.operand
        elif (
            kind == "call_expr"
            and e.call_expr.function == "_[_]"
            and not e.call_expr.HasField("target")
            and len(e.call_expr.args) == 2
        ):
            e = e.call_expr.args[0]
        else:
            return None


def _strip_dyn(e: Expr) -> Expr:
    """`e` without the `dyn(...)` Vigil's inlining wraps variables and constants in (the stock
    planner inlines a variable's expression as it is)."""
    while (
        e.WhichOneof("expr_kind") == "call_expr"
        and e.call_expr.function == "dyn"
        and not e.call_expr.HasField("target")
        and len(e.call_expr.args) == 1
    ):
        e = e.call_expr.args[0]
    return e


def _raw(e: Expr) -> Any:
    """A subexpression cel-go does not evaluate, as a residual expression as written. Vigil's
    rewrites are undone (`dyn(...)` of inlining, presence guards); a constant (inlined as
    `dyn(<literal>)`, which the stock planner prints by its name) and macros (whose bodies the
    stock planner plans again) are refused."""
    kind = e.WhichOneof("expr_kind")
    if kind == "const_expr":
        c = e.const_expr
        which = c.WhichOneof("constant_kind")
        if which == "null_value":
            return ("const", None)
        if which in _CONSTANT_KINDS:
            return ("const", getattr(c, which))
        raise PlanUnsupported(f"a {which} literal in a conditional's branch")
    if kind == "ident_expr":
        return ("ident", e.ident_expr.name)
    if kind == "select_expr":
        sel = e.select_expr
        return ("select", _raw(sel.operand), sel.field, sel.test_only)
    if kind == "list_expr":
        return ("list", [_raw(x) for x in e.list_expr.elements])
    if kind == "struct_expr" and not e.struct_expr.message_name:
        entries = []
        for x in e.struct_expr.entries:
            if not x.HasField("map_key"):
                raise PlanUnsupported("message field in a condition")
            entries.append((_raw(x.map_key), _raw(x.value)))
        return ("map", entries)
    if kind == "call_expr":
        c = e.call_expr
        args = list(c.args)
        if c.function == "dyn" and len(args) == 1 and not c.HasField("target"):
            inner = _strip_dyn(args[0])
            if inner.WhichOneof("expr_kind") in ("const_expr", "list_expr", "struct_expr"):
                raise PlanUnsupported("a constant in a conditional's branch (printed by its name)")
            return _raw(inner)
        if c.function == "_?_:_":
            guarded = _has_guard(args)
            if guarded is not None:
                return _raw(guarded)
        target = _raw(c.target) if c.HasField("target") else None
        return ("call", c.function, target, [_raw(a) for a in args])
    raise PlanUnsupported(f"a {kind} in a conditional's branch")


_CONSTANT_KINDS = ("bool_value", "int64_value", "uint64_value", "double_value", "string_value")


def _plain_keys(e: Expr) -> bool:
    """Whether every index in the attribute `e` is by a literal or by another such attribute
    (cel-go then records no value inside it: its residual is `e` as written)."""
    while True:
        kind = e.WhichOneof("expr_kind")
        if kind == "select_expr":
            e = e.select_expr.operand
        elif kind == "call_expr":
            key = e.call_expr.args[1]
            if key.WhichOneof("expr_kind") != "const_expr" and not (
                _attribute_root(key) is not None and _plain_keys(key)
            ):
                return False
            e = e.call_expr.args[0]
        else:
            return True


def _call_expr(fn: str, args: list[Expr], target: Expr | None = None) -> Expr:
    e = Expr()
    e.call_expr.function = fn
    if target is not None:
        e.call_expr.target.CopyFrom(target)
    for a in args:
        e.call_expr.args.append(a)
    return e


def _list_expr(items: list[Expr]) -> Expr:
    e = Expr()
    e.list_expr.SetInParent()
    for x in items:
        e.list_expr.elements.append(x)
    return e


def _str_expr(v: str) -> Expr:
    e = Expr()
    e.const_expr.string_value = v
    return e


def _residual_expr(r: Any) -> Expr:
    """A residual back into CEL syntax (planner.go qpNToExpr works on the residual AST)."""
    kind = r[0]
    if kind in ("const", "list") and _is_constant(r):
        return _literal_expr(r)
    e = Expr()
    if kind == "ident":
        e.ident_expr.name = r[1]
    elif kind == "select":
        e.select_expr.operand.CopyFrom(_residual_expr(r[1]))
        e.select_expr.field = r[2]
        e.select_expr.test_only = r[3]
    elif kind == "call":
        target = _residual_expr(r[2]) if r[2] is not None else None
        return _call_expr(r[1], [_residual_expr(a) for a in r[3]], target)
    elif kind == "list":
        return _list_expr([_residual_expr(x) for x in r[1]])
    elif kind == "map":
        e.struct_expr.SetInParent()
        for k, v in r[1]:
            entry = e.struct_expr.entries.add()
            entry.map_key.CopyFrom(_residual_expr(k))
            entry.value.CopyFrom(_residual_expr(v))
    else:
        raise PlanUnsupported(
            f"a derived role condition with a {kind} in runtime.effectiveDerivedRoles"
        )
    return e


def _node_expr(node: Node) -> Expr:
    if node[0] == "expr":
        return _residual_expr(node[1])
    if node[1] == "not":
        return _call_expr("!_", [_node_expr(node[2][0])])
    fn = "_&&_" if node[1] == "and" else "_||_"
    args = [_node_expr(n) for n in node[2]]
    out = args[-1]
    for a in reversed(args[:-1]):
        out = _call_expr(fn, [a, out])
    return out


def _substitute_runtime(body: Expr, value: Expr) -> Expr:
    """`body` with `runtime.effectiveDerivedRoles` (either spelling) replaced by `value`."""
    out = Expr()
    out.CopyFrom(body)

    def walk(e: Expr) -> None:
        if e.WhichOneof("expr_kind") == "select_expr" and _chain(e) in (
            ["runtime", "effectiveDerivedRoles"],
            ["runtime", "effective_derived_roles"],
        ):
            e.CopyFrom(value)
        else:
            _each_expr(e, walk)

    walk(out)
    return out


def _literal_expr(r: Any) -> Expr:
    """A known value (`_literal`'s form, an element of a macro's range) as a CEL literal."""
    e = Expr()
    if r[0] == "list":
        e.list_expr.SetInParent()
        for x in r[1]:
            e.list_expr.elements.append(_literal_expr(x))
        return e
    if r[0] != "const":
        raise PlanUnsupported("a macro over known values that are not scalars or lists")
    v = r[1]
    if v is None:
        e.const_expr.null_value = 0
    elif isinstance(v, bool):
        e.const_expr.bool_value = v
    elif isinstance(v, int):
        e.const_expr.int64_value = v
    elif isinstance(v, float):
        e.const_expr.double_value = v
    elif isinstance(v, str):
        e.const_expr.string_value = v
    else:
        raise PlanUnsupported(f"a macro over known {type(v).__name__} values")
    return e


def _substitute(body: Expr, name: str, value: Expr) -> Expr:
    """`body` with the identifier `name` replaced by `value`."""
    out = Expr()
    out.CopyFrom(body)

    def walk(e: Expr) -> None:
        kind = e.WhichOneof("expr_kind")
        if kind == "ident_expr" and e.ident_expr.name == name:
            e.CopyFrom(value)
        elif kind == "comprehension_expr" and name in (
            e.comprehension_expr.iter_var,
            e.comprehension_expr.accu_var,
        ):
            raise PlanUnsupported("nested macros that reuse a variable name")
        else:
            _each_expr(e, walk)

    walk(out)
    return out


def _each_expr(msg: Any, fn: Any) -> None:
    for desc, value in msg.ListFields():
        if desc.message_type is None:
            continue
        for item in value if desc.is_repeated else [value]:
            if isinstance(item, syntax_pb2.Expr):
                fn(item)
            else:
                _each_expr(item, fn)


def _first_error(items: Sequence[Any]) -> Any:
    """cel-go's strict calls (lists, maps): the first argument that is an error or unknown
    decides. An error first makes the whole an error; an unknown first keeps the erroring
    argument in the residual, printed from a Go map (its order varies): refused."""
    unknown = False
    for item in items:
        if item[0] == "error":
            if unknown:
                raise PlanUnsupported(
                    "a part of a condition that does not read the resource fails beside one "
                    f"that does ({item[1]}); the stock planner's answer then depends on Go map "
                    "order"
                )
            return item
        if item[0] not in ("const", "list", "map") or not _is_constant(item):
            unknown = True
    return None


def _is_constant(r: Any) -> bool:
    if r[0] == "const":
        return True
    if r[0] == "list":
        return all(_is_constant(x) for x in r[1])
    if r[0] == "map":
        return all(_is_constant(k) and _is_constant(v) for k, v in r[1])
    return False


def _any_expr(msg: Any, pred: Any) -> bool:
    """Whether `pred` holds for an `Expr` directly inside the AST message `msg`."""
    for desc, value in msg.ListFields():
        if desc.message_type is None:
            continue
        items = value if desc.is_repeated else [value]
        for item in items:
            if isinstance(item, syntax_pb2.Expr):
                if pred(item):
                    return True
            elif _any_expr(item, pred):
                return True
    return False


def _is_in_guard(args: Sequence[Expr]) -> bool:
    """Vigil's `(type(B) == map && type(A) in [null_type, list, map] ? false : A in B)`
    (celcompat.py `guard_in_map`)."""
    if len(args) != 3:
        return False
    no, plain = args[1], args[2]
    if (
        no.WhichOneof("expr_kind") != "const_expr"
        or no.const_expr.WhichOneof("constant_kind") != "bool_value"
        or no.const_expr.bool_value
    ):
        return False
    if plain.WhichOneof("expr_kind") != "call_expr" or plain.call_expr.function != "@in":
        return False
    c = args[0]
    return c.WhichOneof("expr_kind") == "call_expr" and c.call_expr.function == "_&&_"


def _has_guard(args: Sequence[Expr]) -> Expr | None:
    """The `has(x.f)` of Vigil's `(type(x) in [map, list] ? has(x.f) : false)` (presence.py),
    when `x` is unknown: Cerbos's planner sees the plain `has(x.f)`."""
    if len(args) != 3 or args[1].WhichOneof("expr_kind") != "select_expr":
        return None
    if not args[1].select_expr.test_only:
        return None
    c = args[0]
    if c.WhichOneof("expr_kind") != "call_expr" or c.call_expr.function != "@in":
        return None
    t = c.call_expr.args[0]
    if t.WhichOneof("expr_kind") != "call_expr" or t.call_expr.function != "type":
        return None
    return args[1]


def _literal(v: Any) -> Any:
    """A known value as cel-go's pruning writes it back into the expression."""
    if v is None or isinstance(v, bool | int | float | str | bytes):
        return ("const", v)
    if isinstance(v, list | tuple):
        return ("list", [_literal(x) for x in v])
    if isinstance(v, Mapping):
        return ("map", [(_literal(k), _literal(x)) for k, x in v.items()])
    if isinstance(v, dt.datetime):
        return ("call", "timestamp", None, [("const", _rfc3339(v))])
    raise PlanUnsupported(f"a {type(v).__name__} value in a condition over the resource")


def _rfc3339(t: dt.datetime) -> str:
    """Go's time.RFC3339Nano in UTC (how cel-go writes a known timestamp back)."""
    t = t.astimezone(dt.UTC) if t.tzinfo is not None else t
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += "." + f"{t.microsecond:06d}".rstrip("0")
    return text + "Z"


# -- residual expression -> operand (ast.go buildExprImpl) ---------------------------------------


def _value(v: Any) -> Any:
    """A constant as protojson writes a `google.protobuf.Value` (integral doubles as `5`)."""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return to_json_value(v)


def _operand(r: Any, parent: Any = None) -> Operand:
    kind = r[0]
    if kind == "const":
        return {"value": _value(r[1])}
    if kind == "ident":
        return {"variable": r[1]}
    if kind == "select":
        if r[3]:
            return {"value": True}  # has(...): Cerbos's planner writes `true`
        names = [r[2]]
        cur = r[1]
        while cur[0] == "select" and not cur[3]:
            names.append(cur[2])
            cur = cur[1]
        if cur[0] == "ident":
            names.append(cur[1])
            return {"variable": ".".join(reversed(names))}
        return _expr("get-field", [_operand(r[1], r), {"variable": r[2]}])
    if kind == "call":
        fn, target, args = r[1], r[2], r[3]
        ops = [_operand(target, r)] if target is not None else []
        ops += [_operand(a, r) for a in args]
        return _expr(_OPERATORS.get(fn, fn), ops)
    if kind == "list":
        if all(x[0] == "const" for x in r[1]):
            return {"value": [_value(x[1]) for x in r[1]]}
        return _expr("list", [_operand(x, r) for x in r[1]])
    if kind == "map":
        in_rhs = parent is not None and parent[0] == "call" and parent[1] == "@in"
        if in_rhs and len(parent[3]) == 2 and parent[3][1] is r:
            return _operand(("list", _sorted_keys(r[1])), parent)
        if len(r[1]) > 1 and _is_constant(r):
            raise PlanUnsupported(
                "a known map of several entries in a condition over the resource (the stock "
                "planner writes it in Go map order)"
            )
        entries = [_expr("set-field", [_operand(k, r), _operand(v, r)]) for k, v in r[1]]
        return _expr("struct", entries)
    if kind == "lambda":
        _, op, rng, body, var = r
        body_op = _operand(body, r)
        if "value" in body_op:
            raise PlanUnsupported("a macro whose body does not depend on its variable")
        return _expr(op, [_operand(rng, r), _expr("lambda", [body_op, {"variable": var}])])
    raise PlanUnsupported(f"unsupported residual {kind}")


def _sorted_keys(entries: list[tuple[Any, Any]]) -> list[Any]:
    """ast.go structKeys: keys ordered by their protobuf text form."""

    def text(k: Any) -> str:
        if k[0] != "const" or not isinstance(k[1], str | int) or isinstance(k[1], bool):
            raise PlanUnsupported("a map with non-string keys tested with `in`")
        if isinstance(k[1], str):
            return "const_expr:{string_value:" + json.dumps(k[1]) + "}"
        return f"const_expr:{{int64_value:{k[1]}}}"

    return sorted((k for k, _ in entries), key=text)


def _expr(op: str, operands: list[Operand]) -> Operand:
    return {"expression": {"operator": op, "operands": operands}}


def _omit_empty(op: Operand) -> Operand:
    """protojson leaves out an empty repeated field: `{"operator": "struct"}`."""
    if "expression" in op:
        e = op["expression"]
        for child in e["operands"]:
            _omit_empty(child)
        if not e["operands"]:
            del e["operands"]
    return op


def _convert(node: Node) -> Operand:
    if node[0] == "expr":
        return _operand(node[1])
    return _expr(node[1], [_convert(n) for n in node[2]])


# -- normalisation (ast.go normaliseFilter*, mutating in place as the Go code does) --------------


def _bool_of(op: Operand | None) -> bool | None:
    if op is not None and "value" in op and isinstance(op["value"], bool):
        return bool(op["value"])
    return None


def _normalise(op: Operand) -> Operand:
    if "expression" in op:
        return _normalise_expr(op)
    if "variable" in op:
        op["variable"] = _expand_abbrev(op["variable"])
    return op


def _expand_abbrev(name: str) -> str:
    if name == "R" or name.startswith("R."):
        return "request.resource" + name[1:]
    if name == "P" or name.startswith("P."):
        return "request.principal" + name[1:]
    return name


def _normalise_in(expr: dict[str, Any]) -> Operand | None:
    rhs = expr["operands"][1]
    if "value" not in rhs:
        return None
    v = rhs["value"]
    if isinstance(v, dict):
        if not v:
            return {"value": False}
        if len(v) == 1:
            expr["operator"] = "eq"
            expr["operands"][1] = {"value": next(iter(v))}
    elif isinstance(v, list):
        if not v:
            return {"value": False}
        if len(v) == 1:
            expr["operator"] = "eq"
            expr["operands"][1] = {"value": v[0]}
    else:
        expr["operator"] = "eq"
    return None


def _normalise_expr(op: Operand) -> Operand:
    expr = op["expression"]
    operator = expr["operator"]
    if operator == "in" and len(expr["operands"]) == 2:
        s = _normalise_in(expr)
        if s is not None:
            return s
    logical = operator in ("and", "or", "not")
    seen: set[str] | None = set() if operator in ("and", "or") else None
    out: list[Operand] = []
    for child in expr["operands"]:
        normal = _normalise(child)
        if logical:
            b = _bool_of(normal)
            if b is not None:
                if operator == "and" and b:
                    continue
                if operator == "or" and not b:
                    continue
                if operator == "and":
                    return {"value": False}
                if operator == "or":
                    return {"value": True}
        if seen is not None:
            h = json.dumps(child, sort_keys=True)
            if h in seen:
                continue
            seen.add(h)
        out.append(normal)
    if logical:
        if not out:
            if operator == "and":
                return {"value": True}
            if operator == "or":
                return {"value": False}
        elif len(out) == 1:
            if operator in ("and", "or"):
                return out[0]
            b = _bool_of(out[0])
            if b is not None:
                return {"value": not b}
    expr["operands"] = out
    return op


def to_filter(node: Node) -> dict[str, Any]:
    """ast.go toFilter + normaliseFilter: the response's `filter`."""
    cond = _normalise(_convert(node))
    b = _bool_of(cond)
    if b is True:
        return {"kind": "KIND_ALWAYS_ALLOWED"}
    if b is False:
        return {"kind": "KIND_ALWAYS_DENIED"}
    return {"kind": "KIND_CONDITIONAL", "condition": cond}


def filter_debug(flt: dict[str, Any]) -> str:
    """ast.go FilterToString."""
    kind = flt["kind"]
    if kind == "KIND_ALWAYS_ALLOWED":
        return "(true)"
    if kind == "KIND_ALWAYS_DENIED":
        return "(false)"
    return _debug(flt["condition"])


def _debug(op: Operand) -> str:
    if "expression" in op:
        e = op["expression"]
        return "(" + e["operator"] + " " + " ".join(_debug(o) for o in e.get("operands", ())) + ")"
    if "value" in op:
        return json.dumps(op["value"], separators=(",", ":"), ensure_ascii=False)
    return str(op["variable"])


def _merge_with_and(filters: list[dict[str, Any]]) -> dict[str, Any]:
    """The filters of several actions: all must hold."""
    if len(filters) == 1:
        return filters[0]
    if any(f["kind"] == "KIND_ALWAYS_DENIED" for f in filters):
        return {"kind": "KIND_ALWAYS_DENIED"}
    # planner.MergeWithAnd: the conditions by their debug rendering (one per rendering, the
    # last), in its order, AND-ed as they are (not normalised again)
    conds = {_debug(f["condition"]): f["condition"] for f in filters if "condition" in f}
    if not conds:
        return {"kind": "KIND_ALWAYS_ALLOWED"}
    if len(conds) == 1:
        return {"kind": "KIND_CONDITIONAL", "condition": next(iter(conds.values()))}
    return {
        "kind": "KIND_CONDITIONAL",
        "condition": _expr("and", [conds[k] for k in sorted(conds)]),
    }


# -- the rule walk (planner.go EvaluateRuleTableQueryPlan) ---------------------------------------


@dataclass
class ActionPlan:
    allow: list[Node]
    deny: list[Node]
    scope: str
    matched: bool = False

    @property
    def empty(self) -> bool:
        return not self.allow and not self.deny

    def to_ast(self) -> Node:
        a, d = self.allow, self.deny
        if not a:
            if not d:
                return FALSE
            return d[0] if len(d) == 1 else _lo("and", list(d))
        if len(a) == 1:
            return a[0] if not d else _lo("and", [*d, a[0]])
        allow = _lo("or", list(a))
        return allow if not d else _lo("and", [*d, allow])


class Planner:
    """Plans for one compiled bundle (`PolicyEngine`)."""

    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine
        self._parsed: dict[str, Expr] = {}
        # compiled known subexpressions, by their serialized AST (programs are immutable)
        self._programs: dict[bytes, Any] = {}
        self._unknown_roots: dict[tuple[str, frozenset[str]], bool] = {}
        self._lock = threading.Lock()  # the per-call fields below
        # per plan() call, under _lock
        self._roles: list[str] = []
        self._level: ResourcePolicy | None = None
        self._principal_rows = False

    def _expr(self, source: str) -> Expr:
        e = self._parsed.get(source)
        if e is None:
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            e = self._parsed[source] = _parse(self.engine._env, source)
        return e

    def _refuse_unsupported(self, principal: Mapping[str, Any]) -> None:
        eng = self.engine
        if eng._schemas is not None and eng._schemas.active:
            raise PlanUnsupported("schema validation in plans")
        if eng._lenient:
            raise PlanUnsupported("lenient scope search in plans")
        if eng._roles:
            raise PlanUnsupported("role policies in plans")

    def _declared_perms(self, scope: str) -> str:
        """The scope permissions the stock planner applies at `scope`: none at the root (the
        only level `_levels` lets through; see there)."""
        if scope:
            raise PlanUnsupported(f"scoped resource policies (scope {scope!r})")
        return ""

    def _any_scope(self, principal: Mapping[str, Any], scope: str) -> bool:
        """Whether the principal's or the resource's scope chain has any level (measured: the
        stock PDP leaves `matchedScopes` out exactly when both are empty)."""
        eng = self.engine
        pscope = lookup_scope(principal.get("scope"))
        return bool(
            eng._scopes(scope, eng._resource_scopes) or eng._scopes(pscope, eng._principal_scopes)
        )

    def _levels(
        self, principal: Mapping[str, Any], kind: str, version: str, scope: str
    ) -> list[tuple[str, ResourcePolicy | None, PrincipalPolicy | None]]:
        """The scope walk: (scope, resource policy there, principal policy there), from the
        request's scope up to the root (Cerbos's GetAllScopes, per policy type)."""
        eng = self.engine
        rscopes = eng._scopes(scope, eng._resource_scopes)
        pid = principal.get("id", "")
        pversion = principal.get("policyVersion") or eng._default_version
        pscopes = eng._scopes(lookup_scope(principal.get("scope")), eng._principal_scopes)
        owned = [s for s in pscopes if (pid, pversion, s) in eng._principals]
        if pversion != version:
            owned = []  # measured: the planner takes rows of the resource's version only
        if not rscopes:
            # a resource scope no policy uses: measured, the stock planner still applies the
            # principal's root policy when no ancestor scope is used either; otherwise its
            # walk is not reproduced
            parts = scope.split(".")
            if any(".".join(parts[:n]) in eng._resource_scopes for n in range(1, len(parts))):
                raise PlanUnsupported(f"resource scope {scope!r} has no policies of its own")
            if owned == [""] and pscopes == [""]:
                return [("", None, eng._principals[(pid, pversion, "")])]
            if owned:
                raise PlanUnsupported("principal policies with scoped requests")
            return []
        if rscopes != [""]:
            # measured: the stock planner's scope walk (which scopes' rows it combines, and
            # which scope it reports) does not follow the documented scopePermissions
            # semantics that checks use; not reproduced yet
            raise PlanUnsupported(f"scoped resource policies (scope {scope!r})")
        if owned:
            if pscopes != [""] or rscopes != [""]:
                # Cerbos walks a combination of both scope chains (CombineScopes), which
                # Vigil does not reproduce for scoped principal or resource requests
                raise PlanUnsupported("principal policies with scoped requests")
            pp = eng._principals[(pid, pversion, "")]
            return [("", eng._policies.get((kind, version, "")), pp)]
        return [(s, eng._policies.get((kind, version, s)), None) for s in rscopes]

    def plan(
        self,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: Sequence[str],
        aux_data: Mapping[str, Any] | None,
        now: dt.datetime | None,
    ) -> tuple[dict[str, Any], dict[str, str], bool]:
        """(filter, matched scope per action, no policy matched at all). Raises
        `PlanUnsupported`."""
        with self._lock:
            return self._plan(principal, resource, actions, aux_data, now)

    def _plan(
        self,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: Sequence[str],
        aux_data: Mapping[str, Any] | None,
        now: dt.datetime | None,
    ) -> tuple[dict[str, Any], dict[str, str], bool]:
        eng = self.engine
        kind = resource["kind"]
        version = resource.get("policyVersion") or eng._default_version
        scope = lookup_scope(resource.get("scope"))
        self._refuse_unsupported(principal)
        levels = self._levels(principal, kind, version, scope)
        attrs = resource.get("attr") or {}
        probe = {"kind": kind, "id": "", "attr": attrs, "scope": scope, "policyVersion": ""}
        roles = list(principal.get("roles") or ())
        st = _Check(eng, principal, probe, aux_data, kind, version, scope, roles, now, None)
        partial = _Partial(eng._env, st.activation(None, True), frozenset(attrs), self._programs)
        self._roles = roles
        self._level = levels[0][1] if levels else None
        self._runtime: Expr | None = None
        self._plan_derived_roles(levels, roles, partial)
        plans = [self._action(levels, roles, action, kind, partial) for action in actions]
        filters = [to_filter(p.to_ast()) for p in plans]
        scopes = {a: p.scope for a, p in zip(actions, plans, strict=True)}
        if not self._any_scope(principal, scope):
            scopes = {}  # the stock PDP's early "no candidate rows" answer has none
        merged = _merge_with_and(filters)
        if "condition" in merged:
            _omit_empty(merged["condition"])
        return merged, scopes, not any(p.matched for p in plans)

    def _condition(self, cond: Condition | None, partial: _Partial) -> Node:
        """planner.go evaluateCondition."""
        if cond is None:
            return TRUE
        if cond.op == "expr":
            expr = self._expr(cond.source)
            if cond.uses_runtime:
                expr = _substitute_runtime(expr, self._runtime_list(partial))
                return ("expr", partial.root(expr))
            if partial.lambda_vars:
                return ("expr", partial.root(expr))
            key = (cond.source, partial.known_attrs)  # what is unknown depends on these only
            unknown = self._unknown_roots.get(key)
            if unknown is None:
                if len(self._unknown_roots) > 10_000:
                    self._unknown_roots.clear()
                unknown = self._unknown_roots[key] = partial.unknown(expr)
            return ("expr", partial.root(expr, unknown))
        nodes: list[Node] = []
        for child in cond.children:
            node = self._condition(child, partial)
            b = _const_bool(node)
            if cond.op == "any":
                if b is True:
                    return TRUE
                if b is None:
                    nodes.append(node)
            elif cond.op == "all":
                if b is False:
                    return FALSE
                if b is None:
                    nodes.append(node)
            else:  # none
                if b is True:
                    return FALSE
                if b is None:
                    nodes.append(_invert(node))
        if not nodes:
            return FALSE if cond.op == "any" else TRUE
        if len(nodes) == 1:
            return nodes[0]
        return _lo("or" if cond.op == "any" else "and", nodes)

    def _plan_derived_roles(
        self, levels: Sequence[tuple[str, Any, Any]], roles: list[str], partial: _Partial
    ) -> None:
        """The stock planner plans the condition of every derived role of a level whose
        parent roles include one of the principal's (or `*`), whether a row uses it or not,
        and fails the whole plan when that fails (measured: a macro body over the resource
        reading a missing principal attribute). Planned here too, so that such a plan is
        refused rather than answered."""
        principal_roles = set(roles) | {"*"}
        for _scope, rpol, _ppol in levels:
            if rpol is None:
                continue
            for dr in rpol.derived_roles.values():
                if dr.parent_roles & principal_roles:
                    self._condition(dr.condition, partial)

    def _runtime_list(self, partial: _Partial) -> Expr:
        """planner.go mkDerivedRolesList: `runtime.effectiveDerivedRoles` as the expression
        `(c1 ? ["r1"] : []) + ((c2 ? ["r2"] : []) + ...)` over the derived roles of the level
        whose parent roles include one of the principal's, by name, each `ci` the planned
        derived-role condition."""
        if self._principal_rows:
            return _list_expr([])  # principal policy rows see no derived roles
        if self._level is None:
            raise PlanUnsupported("runtime.effectiveDerivedRoles outside a resource policy")
        if self._runtime is not None:
            return self._runtime
        roles = set(self._roles)
        found = []
        for name, dr in sorted(self._level.derived_roles.items()):
            if "*" in dr.parent_roles:
                raise PlanUnsupported("runtime.effectiveDerivedRoles with a `*` parent role")
            if dr.parent_roles & roles:
                if dr.condition is not None and dr.condition.uses_runtime:
                    raise PlanUnsupported("a derived role that reads runtime.effectiveDerivedRoles")
                node = self._condition(dr.condition, partial)
                if _const_bool(node) is None:
                    # measured on the stock PDP 0.55: a derived-role condition that depends on
                    # the resource comes out wrong in this list (its compared values replaced
                    # by the principal id); only constant ones are reproduced
                    raise PlanUnsupported(
                        "runtime.effectiveDerivedRoles with a derived role whose condition reads "
                        "the resource (the stock planner's answer there is wrong)"
                    )
                found.append((name, node))
        elements = [
            _call_expr("_?_:_", [_node_expr(node), _list_expr([_str_expr(name)]), _list_expr([])])
            for name, node in found
        ]
        if not elements:
            out = _list_expr([])
        else:
            out = elements[-1]
            for element in reversed(elements[:-1]):
                out = _call_expr("_+_", [element, out])
        self._runtime = out
        return out

    def _row(self, rule: Rule, dr: DerivedRole | None, partial: _Partial) -> Node:
        node = self._condition(rule.condition, partial)
        if dr is not None and dr.condition is not None:  # no condition: none in the row
            dr_node = self._condition(dr.condition, partial)
            node = dr_node if rule.condition is None else _lo("and", [node, dr_node])
        return node

    def _action(
        self,
        levels: Sequence[tuple[str, Any, Any]],
        roles: list[str],
        action: str,
        kind: str,
        partial: _Partial,
    ) -> ActionPlan:
        """One action, as the 0.55 rule-table planner: resource policies, then principal
        policies. Per role, the rows of every scope from the request's up to the root are
        OR-ed (the matched scope is the last OVERRIDE_PARENT scope with a row); a
        constant-true DENY of a role makes that role's ALLOW false; an unconditional ALLOW of
        a role decides; then NOT(deny) AND allow."""
        result = ActionPlan([], [], "")
        root: Node | None = None
        has_allow = False
        for pt in ("resource", "principal"):
            type_allow: Node | None = None
            type_deny: Node | None = None
            for i, role in enumerate(roles):
                if i > 0 and pt == "principal":
                    break  # principal rows are role agnostic
                role_allow: Node | None = None
                role_deny: Node | None = None
                pending = False
                for scope, rpol, ppol in levels:
                    scope_allow: Node | None = None
                    scope_deny: Node | None = None
                    rows: Sequence[tuple[Rule, DerivedRole | None]] = ()
                    if pt == "resource" and rpol is not None:
                        rows = rpol.bindings(action, role)
                    elif pt == "principal" and ppol is not None:
                        rows = [(r, None) for r in ppol.bindings(kind, action)]
                    self._principal_rows = pt == "principal"
                    for rule, dr in rows:
                        node = self._row(rule, dr, partial)
                        if rule.effect == "EFFECT_ALLOW":
                            scope_allow = _add(scope_allow, node, "or")
                        elif _const_bool(node) is not False:  # a DENY that never applies
                            scope_deny = _add(scope_deny, node, "or")
                    role_deny = _add(role_deny, scope_deny, "or")
                    perms = self._declared_perms(scope)
                    if scope_allow is not None:
                        if role_allow is None:
                            role_allow = scope_allow
                        elif pending:
                            role_allow = _mk(("lo", "and", [role_allow, scope_allow]))
                            pending = False
                        else:
                            role_allow = _mk(("lo", "or", [role_allow, scope_allow]))
                        if perms == REQUIRE_PARENTAL_CONSENT:
                            pending = True
                    if (scope_deny is not None or scope_allow is not None) and (
                        perms == OVERRIDE_PARENT
                    ):
                        result.scope = scope  # the walk goes on (0.55 has no break here)
                if pending:
                    role_allow = None
                if role_deny is not None and _const_bool(role_deny) is True:
                    role_allow, role_deny = FALSE, None
                elif (
                    role_allow is not None and role_deny is None and _const_bool(role_allow) is True
                ):
                    type_allow, type_deny = role_allow, None
                    break
                type_allow = _add(type_allow, role_allow, "or")
                type_deny = _add(type_deny, role_deny, "or")
            if type_allow is not None:
                has_allow = True
                root = type_allow if root is None else _mk(("lo", "or", [type_allow, root]))
            if type_deny is not None:
                inv = _invert(type_deny)
                root = inv if root is None else _mk(("lo", "and", [inv, root]))
        if root is not None:
            result.matched = True
            if has_allow:
                result.allow = [root]
            else:
                result.deny = [FALSE]
        return result


def _key(node: Node) -> str:
    return json.dumps(node, default=repr)


def _mk(node: Node) -> Node:
    """MkOrNode / MkAndNode: duplicates dropped, one operand is itself."""
    unique: list[Node] = []
    seen: set[str] = set()
    for n in node[2]:
        k = _key(n)
        if k not in seen:
            seen.add(k)
            unique.append(n)
    return unique[0] if len(unique) == 1 else ("lo", node[1], unique)


def _add(cur: Node | None, new: Node | None, op: str) -> Node | None:
    if new is None:
        return cur
    if cur is None:
        return new
    return _mk(("lo", op, [cur, new]))


_PLANNERS: weakref.WeakKeyDictionary[PolicyEngine, Planner] = weakref.WeakKeyDictionary()


def planner_for(engine: PolicyEngine) -> Planner:
    """The engine's planner (parsed expressions are cached per bundle)."""
    found = _PLANNERS.get(engine)
    if found is None:
        found = _PLANNERS[engine] = Planner(engine)
    return found


def plan_response(
    engine: PolicyEngine,
    request: Mapping[str, Any],
    principal: Mapping[str, Any],
    call_id: str,
    *,
    plural: bool,
    aux_data: Mapping[str, Any] | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The PlanResources response for a request parsed by `api.parse_plan_request`, with
    `principal` as the policies see it and ``aux_data`` its verified ``auxData``
    (`api.verified_aux_data`). Raises `PlanUnsupported`."""
    resource = request["resource"]
    actions: list[str] = request["actions"]
    flt, scopes, no_match = planner_for(engine).plan(principal, resource, actions, aux_data, now)
    out: dict[str, Any] = {}
    if request["request_id"]:
        out["requestId"] = request["request_id"]
    if plural:
        out["actions"] = actions
    else:
        out["action"] = actions[0]
    out["resourceKind"] = resource["kind"]
    if resource["policyVersion"]:
        out["policyVersion"] = resource["policyVersion"]
    out["filter"] = flt
    if request["include_meta"]:
        meta: dict[str, Any] = {"filterDebug": "NO_MATCH" if no_match else filter_debug(flt)}
        if plural and scopes:
            meta["matchedScopes"] = scopes
        elif scopes.get(actions[0]):
            meta["matchedScope"] = scopes[actions[0]]
        out["meta"] = meta
    out["cerbosCallId"] = call_id
    return out


UNIMPLEMENTED = 12  # gRPC status of a plan the planner refuses (HTTP 501)


def plan_resources(
    engine: PolicyEngine,
    body: Any,
    *,
    call_id: str = "",
    now: dt.datetime | None = None,
    aux_data: AuxDataVerifier = NO_KEY_SETS,
) -> dict[str, Any]:
    """A PlanResources request body -> the Cerbos response, the principal as sent (what
    ``vigil policy plan`` answers); ``aux_data`` verifies ``auxData`` tokens as in
    `api.check_resources`. Raises `RequestError` (code 12 for a refused plan)."""

    req = parse_plan_request(body)
    aux = verified_aux_data(req["aux"], aux_data, now)
    plural = bool(isinstance(body, dict) and body.get("actions"))
    try:
        return plan_response(
            engine, req, req["principal"], call_id, plural=plural, aux_data=aux, now=now
        )
    except PlanUnsupported as exc:
        raise RequestError(f"cannot plan: {exc}", code=UNIMPLEMENTED) from None


__all__ = [
    "PlanUnsupported",
    "Planner",
    "filter_debug",
    "plan_resources",
    "plan_response",
    "planner_for",
    "to_filter",
]
