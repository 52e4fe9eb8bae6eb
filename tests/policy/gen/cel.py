"""A small grammar of CEL conditions and output expressions over request attributes of every
JSON type, for generated Cerbos stores.

Expressions stay within what both the stock PDP and Vigil accept at compile time: terms whose
static CEL type is known (`size(...)` is `int`, `P.id` a string) are only compared with literals
of that type (Vigil's checker refuses cross-type literal ordering such as `size(x) > 1.5`, which
cel-go accepts; see docs/policies.md "Not supported yet"); attributes are `dyn`, so anything
type-checks against them and type mismatches become evaluation errors, which is the point.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

#: Attribute name -> JSON type, for principals and resources. Requests draw values from
#: `VALUES` (sometimes of another type, sometimes missing).
P_ATTRS: dict[str, str] = {
    "dept": "str",
    "level": "int",
    "score": "float",
    "active": "bool",
    "tags": "strlist",
    "nums": "numlist",
    "meta": "map",
    "note": "null",
    "since": "ts",
}
R_ATTRS: dict[str, str] = {
    "owner": "str",
    "dept": "str",
    "level": "int",
    "score": "float",
    "public": "bool",
    "tags": "strlist",
    "nums": "numlist",
    "meta": "map",
    "note": "null",
    "created": "ts",
}
VALUES: dict[str, list[Any]] = {
    "str": ["eng", "ops", "sales", "", "Eng", "eng-1", "alice"],
    "int": [0, 1, 2, 3, 5, -1, 10],
    "float": [0.5, 1.5, 2.0, 9.75, -3.25, 100.0],
    "bool": [True, False],
    "strlist": [[], ["a"], ["a", "b"], ["b", "c"], ["c", "a", "b"], ["eng"]],
    "numlist": [[], [1], [1, 2, 3], [0.5, 4], [-1, 2]],
    "map": [
        {},
        {"region": "eu", "tier": 1},
        {"region": "us", "tier": 2, "flags": {"x": True}},
        {"tier": 3.5, "flags": {}},
        {"region": "", "tier": 0, "tags": ["a"]},
    ],
    "null": [None],
    "ts": ["2020-01-01T00:00:00Z", "2031-06-15T12:30:00Z", "1999-12-31T23:59:59Z", "not-a-time"],
}
STR_LITS = ["eng", "ops", "", "Eng", "a", "b", "alice", "e", "eu", "us"]
INT_LITS = [0, 1, 2, 3, -1, 10]
FLOAT_LITS = [0.5, 1.5, 2.0, -3.25, 9.75]
CMP = ["==", "!=", "<", "<=", ">", ">="]


def lit(value: Any) -> str:
    """A CEL literal for a JSON value (JSON string escapes are valid CEL)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)}: {lit(v)}" for k, v in value.items()) + "}"


@dataclass
class Names:
    """What an expression may refer to besides the request."""

    variables: dict[str, str] = field(default_factory=dict)  # V.name -> "bool"|"num"|"str"
    constants: dict[str, Any] = field(default_factory=dict)  # C.name -> value
    globals_: dict[str, Any] = field(default_factory=dict)  # G.name -> value
    derived_roles: list[str] = field(default_factory=list)  # for runtime.effectiveDerivedRoles


class Gen:
    """Expression generator; all choices come from one seeded `random.Random`."""

    def __init__(self, rng: random.Random, names: Names) -> None:
        self.rng = rng
        self.names = names

    def pick(self, seq: Any) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def _attr(self, kinds: tuple[str, ...]) -> str:
        opts = [f"P.attr.{n}" for n, k in P_ATTRS.items() if k in kinds]
        opts += [f"R.attr.{n}" for n, k in R_ATTRS.items() if k in kinds]
        return str(self.pick(opts))

    def _named(self, kind: str) -> list[str]:
        out = [f"V.{n}" for n, k in self.names.variables.items() if k == kind]
        for table, prefix in ((self.names.constants, "C"), (self.names.globals_, "G")):
            for n, v in table.items():
                if _kind_of(v) == kind:
                    out.append(f"{prefix}.{n}")
        return out

    # -- terms: (source, static type) where static type is "dyn", "int", "string", "list"

    def num_term(self) -> tuple[str, str]:
        r = self.rng.random()
        if r < 0.5:
            return self._attr(("int", "float")), "dyn"
        if r < 0.6:
            return self.pick(["R.attr.meta.tier", "P.attr.meta.tier", "P.attr.nums[0]"]), "dyn"
        if r < 0.75:
            return f"size({self.list_term()})", "int"
        # constants too: Vigil inlines them as `dyn(1.0)`, so `C.n in [0, 1]` compiles as in
        # Cerbos, where `C` is dyn (test_generated_regressions.py)
        named = self._named("num")
        if r < 0.85 and named:
            return self.pick(named), "dyn"
        if r < 0.92:
            # statically double: equal only to double literals (cel-go refuses `double == int`),
            # ordered against any number
            terms = ["P.attr.level + 1.0", "R.attr.score * 2.0", "P.attr.level / 2.0"]
            return self.pick(terms), "double"
        return self.pick(["P.attr.level - R.attr.level", "R.attr.score + P.attr.score"]), "dyn"

    def num_lit(self, static: str) -> str:
        if static == "double":
            return lit(self.pick(FLOAT_LITS))
        if static == "int" or self.rng.random() < 0.6:
            return lit(self.pick(INT_LITS))
        return lit(self.pick(FLOAT_LITS))

    def str_term(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return self._attr(("str",))
        if r < 0.6:
            return str(self.pick(["P.id", "R.id", "R.kind", "R.scope", "P.scope"]))
        if r < 0.7:
            return str(self.pick(["R.attr.meta.region", "P.attr.meta.region", "P.attr.tags[0]"]))
        if r < 0.82 and self._named("str"):
            return str(self.pick(self._named("str")))
        if r < 0.9:
            return f"{self._attr(('str',))}.lowerAscii()"
        return f"string({self._attr(('int', 'float', 'bool'))})"

    def list_term(self) -> str:
        r = self.rng.random()
        if r < 0.6:
            return self._attr(("strlist", "numlist"))
        if r < 0.7:
            return "P.roles"
        if r < 0.8 and self._named("list"):
            return str(self.pick(self._named("list")))
        if r < 0.9:
            return f"{self._attr(('strlist',))}.filter(t, t != {lit(self.pick(STR_LITS))})"
        return lit(self.rng.sample(["a", "b", "c", "eng"], self.rng.randint(0, 3)))

    # -- boolean conditions

    def cond(self, depth: int = 0) -> str:
        """One boolean CEL expression."""
        r = self.rng.random()
        if depth < 2 and r < 0.15:
            op = self.pick(["&&", "||"])
            return f"({self.cond(depth + 1)} {op} {self.cond(depth + 1)})"
        if depth < 2 and r < 0.19:
            return f"!({self.cond(depth + 1)})"
        if depth < 2 and r < 0.22:
            return f"({self.cond(depth + 1)} ? {self.cond(depth + 1)} : {self.cond(depth + 1)})"
        return self.leaf()

    def leaf(self) -> str:
        kind = self.pick(
            [
                "num",
                "num",
                "str",
                "str",
                "strfn",
                "in",
                "in",
                "has",
                "bool",
                "null",
                "macro",
                "cerbos",
                "cross",
                "named",
                "runtime",
                "time",
            ]
        )
        return str(getattr(self, f"_leaf_{kind}")())

    def _leaf_num(self) -> str:
        term, static = self.num_term()
        op = self.pick(CMP)
        if op in ("==", "!="):  # cel-go refuses `double == int`: a literal of the term's type
            return f"{term} {op} {self.num_lit(static)}"
        # cel-go orders int, uint and double against each other (streams/policy/celcompat.py)
        r = self.rng.random()
        other = self.num_lit("dyn") if r < 0.85 else f"{self.pick([0, 1, 3])}u"
        return f"{term} {op} {other}"

    def _leaf_str(self) -> str:
        return f"{self.str_term()} {self.pick(['==', '!='])} {lit(self.pick(STR_LITS))}"

    def _leaf_strfn(self) -> str:
        fn = self.pick(["startsWith", "endsWith", "contains"])
        term = self.str_term()
        r = self.rng.random()
        if r < 0.6:
            return f"{term}.{fn}({lit(self.pick(STR_LITS))})"
        if r < 0.8:
            return f"{term}.matches({lit(self.pick(['^e', 'g$', '^[a-z]+$', '']))})"
        return f"size({term}) {self.pick(CMP)} {self.pick(INT_LITS)}"

    def _leaf_in(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return f"{lit(self.pick(STR_LITS + ['user', 'admin']))} in {self.list_term()}"
        if r < 0.7:
            values = self.rng.sample(STR_LITS, self.rng.randint(1, 3))
            return f"{self.str_term()} in {lit(values)}"
        if r < 0.85:
            # a statically typed term only with a list of its own type: both refuse
            # `double in list(int)` (docs/policies.md)
            term, static = self.num_term()
            pool = {"int": [1, 2, 0, -1], "double": [1.5, 2.0, -3.25]}.get(static, [1, 2, 3.5, 0])
            return f"{term} in {lit(self.rng.sample(pool, 2))}"
        return f"{self.pick(['region', 'tier', 'flags', 'x'])!r} in {self.pick(['R', 'P'])}.attr.meta".replace(
            "'", '"'
        )

    def _leaf_has(self) -> str:
        # on P.attr / R.attr (always maps), or on a field of an attribute of any type: has()
        # on a scalar is false as in cel-go (streams/policy/presence.py)
        path = self.pick([f"P.attr.{n}" for n in P_ATTRS] + [f"R.attr.{n}" for n in R_ATTRS])
        if self.rng.random() < 0.3:
            path += "." + self.pick(["region", "tier", "x"])
        return f"has({path})"

    def _leaf_bool(self) -> str:
        term = self._attr(("bool",))
        return str(
            self.pick([term, f"{term} == true", f"{term} == false", f"!{term}", f"{term} != true"])
        )

    def _leaf_null(self) -> str:
        return f"{self._attr(('null', 'str', 'map'))} {self.pick(['==', '!='])} null"

    def _leaf_macro(self) -> str:
        lst = self._attr(("strlist", "numlist"))
        body = self.pick(
            [
                f"x == {lit(self.pick(STR_LITS))}",
                "x > 1",
                f'x.startsWith("{self.pick(["a", "e"])}")',
                "x in R.attr.tags",
                "x != P.attr.dept",
            ]
        )
        macro = self.pick(["exists", "all", "exists_one"])
        r = self.rng.random()
        if r < 0.7:
            return f"{lst}.{macro}(x, {body})"
        if r < 0.8:
            return f"size({lst}.filter(x, {body})) {self.pick(CMP)} {self.pick(INT_LITS)}"
        if r < 0.9:
            return f'{lst}.map(x, string(x)).exists(s, s == "{self.pick(["a", "1", "2"])}")'
        # two-variable macros building maps (streams/policy/celcompat.py), on lists and maps
        src = self.pick([lst, "R.attr.meta", "P.attr.level"])
        key = self.pick(['"1"', '"a"', '"region"', "0", "1"])
        skey = self.pick(['"1"', '"a"'])
        return self.pick(
            [
                f"{key} in {src}.transformMap(k, x, {body})",
                f"size({src}.transformMap(k, x, {body}, k)) {self.pick(CMP)} 1",
                # the result is statically map(string, ...): a string key (cel-go checks it)
                f"{skey} in {src}.transformMapEntry(k, x, {{string(x): k}})",
                f"{src}.transformMapEntry(k, x, {body}, {{string(k): x}}).exists(k, x, {body})",
            ]
        )

    def _leaf_cerbos(self) -> str:
        a, b = self.list_term(), self.list_term()
        return str(
            self.pick(
                [
                    f"hasIntersection({a}, {b})",
                    f"{a}.isSubset({b})",
                    f"size(intersect({a}, {b})) > 0",
                    f"size(except({a}, {b})) == 0",
                ]
            )
        )

    def _leaf_cross(self) -> str:
        return str(
            self.pick(
                [
                    "R.attr.owner == P.id",
                    "P.attr.dept == R.attr.dept",
                    f"P.attr.level {self.pick(CMP)} R.attr.level",
                    f"P.attr.score {self.pick(CMP)} R.attr.score",
                    "P.attr.tags == R.attr.tags",
                    "P.attr.meta == R.attr.meta",
                    "R.attr.dept in P.attr.tags",
                    "P.id in R.attr.tags",
                    f'"{self.pick(["user", "admin", "viewer"])}" in P.roles',
                    "R.attr.meta[P.attr.dept] == 1",
                ]
            )
        )

    def _leaf_named(self) -> str:
        bools = [f"V.{n}" for n, k in self.names.variables.items() if k == "bool"]
        bools += [f"G.{n}" for n, v in self.names.globals_.items() if isinstance(v, bool)]
        bools += [f"C.{n}" for n, v in self.names.constants.items() if isinstance(v, bool)]
        if bools and self.rng.random() < 0.5:
            return str(self.pick(bools))
        lists = self._named("list")
        if lists and self.rng.random() < 0.5:
            return f"{self.str_term()} in {self.pick(lists)}"
        nums = self._named("num")
        if nums:
            return f"{self._attr(('int', 'float'))} {self.pick(CMP)} {self.pick(nums)}"
        return self._leaf_num()

    def _leaf_runtime(self) -> str:
        roles = self.names.derived_roles or ["nobody"]
        r = self.rng.random()
        if r < 0.7:
            return f'"{self.pick(roles)}" in runtime.effectiveDerivedRoles'
        return f"size(runtime.effectiveDerivedRoles) {self.pick(CMP)} {self.pick([0, 1, 2])}"

    def _leaf_time(self) -> str:
        ts = self._attr(("ts",))
        return str(
            self.pick(
                [
                    f'timestamp({ts}) < timestamp("2025-01-01T00:00:00Z")',
                    f"timestamp({ts}) < now()",
                    f"timestamp({ts}).getFullYear() >= 2020",
                    f'timestamp({ts}) + duration("24h") > timestamp("2020-01-01T12:00:00Z")',
                ]
            )
        )

    # -- match blocks and outputs

    def match(self, depth: int = 0) -> dict[str, Any]:
        """A Cerbos `match` block: `expr`, or `all`/`any`/`none` of nested blocks."""
        if depth >= 2 or self.rng.random() < 0.6:
            return {"expr": self.cond()}
        op = self.pick(["all", "any", "none"])
        return {op: {"of": [self.match(depth + 1) for _ in range(self.rng.randint(1, 3))]}}

    def value(self) -> str:
        """An expression of any type, for outputs and non-boolean variables."""
        r = self.rng.random()
        if r < 0.2:
            return self.str_term()
        if r < 0.35:
            return self.num_term()[0]
        if r < 0.45:
            # not `.filter()`: over a map (a mistyped attribute) it lists the keys, in Go's
            # random map order in the stock PDP
            return self.pick([self._attr(("strlist", "numlist")), "P.roles", lit(["a", "b"])])
        if r < 0.6:
            return f'{{"k": {self.str_term()}, "n": {self.num_term()[0]}}}'
        if r < 0.7:
            return self.pick(["R.attr.meta", "P.attr.note", "P.attr", "R.attr.tags"])
        if r < 0.8:
            return f'"{self.pick(["ok", "deny", "x"])}-" + {self.str_term()}'
        if r < 0.9:
            return f"[{self.str_term()}, {self.num_term()[0]}]"
        return self.cond()


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "other"
