"""Avro schemas compiled once into specialised Python encoders, byte-identical to fastavro.

``fastavro.schemaless_writer`` walks the parsed schema for every record it writes (type dispatch,
union matching, default lookups), which costs ~12 µs for a Decision. :func:`compile_encoder` does
that walk once: it generates the Python source of one function per schema (nested records inlined,
field names, union indexes and defaults as constants, varints from precomputed tables), compiles
it, and keeps the source (:attr:`CompiledEncoder.source`, also visible in tracebacks).

Contract of a generated ``encode(datum, prefix) -> bytes``: it returns exactly the bytes fastavro
would write after ``prefix``, or it raises. It only accepts values whose encoding is known to be
identical:

* ``None`` for null, ``True``/``False`` for boolean, exact ``int`` in range for int/long, exact
  ``float`` (or ``int``, converted like fastavro does) for float/double, exact ``bytes`` for
  bytes/fixed, exact ``list`` for arrays and exact ``dict`` for maps and records;
* strings through ``.encode()`` exactly as fastavro does (so ``str`` subclasses work);
* missing record fields take the schema default (or null), as in fastavro;
* union branches named with fastavro's tuple notation ``(name, value)`` (how
  :func:`~streams.codecs.shapes.attributes_to_avro` picks a Signal attributes record), or implied
  by the Python type where fastavro's first-match rule gives one answer (``None`` -> null,
  ``str`` -> string or a matching enum, ``int`` -> int/long/double, ``float`` -> double, ...).

Anything else (a ``dict`` for a record union, ``bool`` where a number is expected, a ``tuple`` for
an array, an ``IntEnum``...) raises, and :class:`~streams.codecs.avro.AvroWriter` hands the record
to fastavro, which encodes it by its own rules or raises the real error; :func:`locate_error` then
names the field path. Schemas the compiler does not cover (recursive types, decimal/uuid logical
types) get no compiled encoder at all (:func:`compile_encoder` returns None).
"""

from __future__ import annotations

import ast
import itertools
import linecache
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

# --------------------------------------------------------------------------- runtime helpers

_INT_MIN: Final = -(1 << 31)
_INT_MAX: Final = (1 << 31) - 1
_LONG_MIN: Final = -(1 << 63)
_LONG_MAX: Final = (1 << 63) - 1
_TABLE: Final = 1 << 14
"""Zig-zag values below this have a precomputed varint (1 or 2 bytes)."""
_LEN_TABLE: Final = _TABLE // 2
"""Lengths/counts below this (zig-zag ``2n``) come straight from :data:`_LEN`."""


def _uvarint(z: int) -> bytes:
    """Base-128 varint of a non-negative (already zig-zagged) int."""
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT: Final = [_uvarint(z) for z in range(_TABLE)]
_LEN: Final = _VARINT[::2]
_LOW14: Final = [bytes(((z & 0x7F) | 0x80, (z >> 7) | 0x80)) for z in range(_TABLE)]
"""Low 14 bits of a longer varint: two bytes, both with the continuation bit."""


def _long(v: int) -> bytes:
    """Zig-zag varint of an Avro long; OverflowError outside int64 (fastavro then decides)."""
    if not _LONG_MIN <= v <= _LONG_MAX:
        raise OverflowError(f"{v} does not fit an Avro long")
    z = (v << 1) ^ (v >> 63)
    if z < _TABLE:
        return _VARINT[z]
    parts = []
    while z >= _TABLE:
        parts.append(_LOW14[z & 0x3FFF])
        z >>= 14
    parts.append(_VARINT[z])
    return b"".join(parts)


class _High(dict[int, bytes]):
    """``z >> 14`` -> its varint, for zig-zag values of 14 bits or more (timestamps: the high part
    changes every ~8 s, so this is nearly always a hit). OverflowError past int64."""

    def __missing__(self, high: int) -> bytes:
        if high >= 1 << 50:  # z >= 2**64: the value does not fit an Avro long
            raise OverflowError("integer does not fit an Avro long")
        if len(self) >= 4096:
            self.clear()
        encoded = self[high] = _uvarint(high)
        return encoded


class _Mismatch(Exception):
    """A value the compiled encoder does not take (fastavro decides instead)."""


_RUNTIME: Final[dict[str, Any]] = {
    "_VARINT": _VARINT,
    "_LEN": _LEN,
    "_long": _long,
    "_LOW14": _LOW14,
    "_HIGH": _High(),
    "_Mismatch": _Mismatch,
    "_BOOL": {True: b"\x01", False: b"\x00"},
    "_pack_d": struct.Struct("<d").pack,
    "_pack_f": struct.Struct("<f").pack,
}

# --------------------------------------------------------------------------- compiler

_PRIMITIVES: Final = frozenset(
    ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
)
_NAMED: Final = frozenset(("record", "error", "enum", "fixed"))
#: logical types whose fastavro writer passes an ``int`` through unchanged (datetimes etc. are
#: converted by fastavro: the compiled code only takes exact ints, so those fall back).
_INT_LOGICAL: Final = frozenset(
    (
        "long-timestamp-millis",
        "long-local-timestamp-millis",
        "long-timestamp-micros",
        "long-local-timestamp-micros",
        "int-date",
        "int-time-millis",
        "long-time-micros",
    )
)
#: logical types fastavro converts for values the compiled code would accept: not compiled.
_CONVERTING_LOGICAL: Final = frozenset(("bytes-decimal", "fixed-decimal", "string-uuid"))


class Unsupported(Exception):
    """The schema uses something the compiler does not cover (fastavro is used for it)."""


def _named_types(schema: Any) -> dict[str, Any]:
    """Full name -> definition of every named type in a parsed schema."""
    found: dict[str, Any] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            t = node.get("type")
            if t in _NAMED and "name" in node:
                found.setdefault(node["name"], node)
            if isinstance(t, dict | list):
                walk(t)
            for field in node.get("fields", ()) if t in ("record", "error") else ():
                walk(field.get("type"))
            if t == "array":
                walk(node.get("items"))
            elif t == "map":
                walk(node.get("values"))

    walk(schema)
    return found


def _branch_name(branch: Any) -> Any:
    """The name fastavro's tuple notation matches a union branch by (``extract_record_type``)."""
    if isinstance(branch, dict):
        t = branch.get("type")
        return branch.get("name") if t in _NAMED else t
    return branch


class _Compiler:
    """Emits the body of one encoder function.

    Output goes to the list ``out`` (joined once at the end). Values are compiled to *pieces*
    (expressions of bytes) kept pending while the code is straight-line and flushed as one
    ``out += (piece, piece, ...)`` before any branch or loop: far fewer bytecodes than writing
    every piece separately. Every temporary gets its own name, since pending pieces refer to it.
    """

    def __init__(self, schema: Any, large: bool) -> None:
        self.named = _named_types(schema)
        self.large = large
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.pending: list[str] = []
        self._ids = itertools.count(1)
        self._expanding: list[str] = []

    # ------------------------------------------------------------------ plumbing

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def piece(self, expr: str) -> None:
        self.pending.append(expr)

    def literal(self, data: bytes) -> None:
        """A constant piece, merged with a constant piece just before it."""
        last = self.pending[-1] if self.pending else ""
        if last.startswith(("b'", 'b"')):
            self.pending[-1] = repr(ast.literal_eval(last) + data)
        else:
            self.pending.append(repr(data))

    def flush(self, depth: int) -> None:
        if self.pending:
            self.emit(depth, f"out += ({', '.join(self.pending)},)")
            self.pending = []

    def var(self, stem: str) -> str:
        return f"{stem}{next(self._ids)}"

    def const(self, value: Any) -> str:
        """A constant expression for ``value`` (a literal where Python has one)."""
        if value is None or type(value) in (bool, int, str, bytes):
            return repr(value)
        if type(value) is float and value == value and value not in (float("inf"), float("-inf")):
            return repr(value)
        name = f"_K{len(self.consts)}"
        self.consts[name] = value
        return name

    def as_var(self, expr: str, depth: int) -> str:
        if expr.isidentifier():
            return expr
        name = self.var("v")
        self.emit(depth, f"{name} = {expr}")
        return name

    def fail(self, depth: int, path: str) -> None:
        self.emit(depth, f"raise _Mismatch({path!r})")

    def length(self, expr: str) -> None:
        """Piece: the varint of a length/count ``expr`` (``IndexError`` past the table if not
        ``large``: the caller then retries with the ``large`` variant)."""
        if self.large:
            self.piece(f"_LEN[{expr}] if {expr} < {_LEN_TABLE} else _long({expr})")
        else:
            self.piece(f"_LEN[{expr}]")

    def resolve(self, schema: Any) -> Any:
        """Named-type references -> their definition; ``{"type": <complex>}`` -> the inner type."""
        while True:
            if isinstance(schema, str) and schema not in _PRIMITIVES:
                if schema not in self.named:
                    raise Unsupported(f"unknown type {schema!r}")
                schema = self.named[schema]
            elif isinstance(schema, dict) and isinstance(schema.get("type"), dict | list):
                if schema.get("logicalType"):
                    raise Unsupported("logicalType on a complex type")
                schema = schema["type"]
            else:
                return schema

    @staticmethod
    def type_of(schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, dict):
            t = schema.get("type")
            if not isinstance(t, str):
                raise Unsupported(f"unexpected schema node {schema!r}")
            logical = schema.get("logicalType")
            if logical and f"{t}-{logical}" in _CONVERTING_LOGICAL:
                raise Unsupported(f"logical type {t}-{logical}")
            return t
        if isinstance(schema, str):
            return schema
        raise Unsupported(f"unexpected schema node {schema!r}")

    # ------------------------------------------------------------------ values

    def value(
        self, schema: Any, expr: str, depth: int, path: str, strict: bool, checked: bool = False
    ) -> None:
        """Emit code writing the value of ``expr`` per ``schema``.

        ``strict``: the value sits inside a union branch fastavro chose by *validating* it (a list
        for an array branch, a dict for a map branch), so only values fastavro's validator accepts
        may be written; elsewhere the writer's own (duck-typed) rules apply. ``checked``: a union
        has already tested the Python type (and range) that selects this primitive branch.
        """
        schema = self.resolve(schema)
        t = self.type_of(schema)
        if t == "union":
            self.union(schema, expr, depth, path, strict)
        elif t == "null":
            self.emit(depth, f"if {expr} is not None:")
            self.fail(depth + 1, path)
        elif t == "boolean":
            v = self.as_var(expr, depth)
            self.emit(depth, f"if {v} is not True and {v} is not False:")
            self.fail(depth + 1, path)
            self.piece(f"_BOOL[{v}]")
        elif t in ("int", "long"):
            v = self.as_var(expr, depth)
            if not checked:
                if t == "int":
                    self.emit(
                        depth, f"if type({v}) is not int or not {_INT_MIN} <= {v} <= {_INT_MAX}:"
                    )
                else:
                    self.emit(depth, f"if type({v}) is not int:")
                self.fail(depth + 1, path)
            # zig-zag: z < 2**64 exactly when the value fits an int64 (else _HIGH raises)
            z = self.var("z")
            self.emit(depth, f"{z} = ({v} << 1) ^ ({v} >> 63)")
            self.piece(
                f"_VARINT[{z}] if {z} < {_TABLE} else _LOW14[{z} & {_TABLE - 1}] + _HIGH[{z} >> 14]"
            )
        elif t in ("float", "double"):
            v = self.as_var(expr, depth)
            self.emit(depth, f"if type({v}) is not float:")
            if not checked:  # else: an int or a float
                self.emit(depth + 1, f"if type({v}) is not int:")
                self.fail(depth + 2, path)
            self.emit(depth + 1, f"{v} = float({v})")  # as fastavro does
            self.piece(f"{'_pack_f' if t == 'float' else '_pack_d'}({v})")
        elif t == "bytes":
            v = self.as_var(expr, depth)
            if not checked:
                self.emit(depth, f"if type({v}) is not bytes:")
                self.fail(depth + 1, path)
            self.length(f"len({v})")
            self.piece(v)
        elif t == "string":
            if strict and not checked:
                v = self.as_var(expr, depth)
                self.emit(depth, f"if not isinstance({v}, str):")
                self.fail(depth + 1, path)
                expr = v
            self.string(expr, depth)
        elif t == "enum":
            symbols = self.const({s: _VARINT[2 * i] for i, s in enumerate(schema["symbols"])})
            v = self.as_var(expr, depth)
            self.emit(depth, f"if type({v}) is not str or {v} not in {symbols}:")
            self.fail(depth + 1, path)
            self.piece(f"{symbols}[{v}]")
        elif t == "fixed":
            v = self.as_var(expr, depth)
            self.emit(depth, f"if type({v}) is not bytes or len({v}) != {int(schema['size'])}:")
            self.fail(depth + 1, path)
            self.piece(v)
        elif t == "array":
            v = self.as_var(expr, depth)
            item = self.var("x")
            self.emit(depth, f"if type({v}) is not list:")
            self.fail(depth + 1, path)
            self.flush(depth)
            self.emit(depth, f"if {v}:")
            self.length(f"len({v})")
            self.flush(depth + 1)
            self.emit(depth + 1, f"for {item} in {v}:")
            self.value(schema["items"], item, depth + 2, f"{path}[]", strict)
            self.flush(depth + 2)
            self.literal(b"\x00")
        elif t == "map":
            v = self.as_var(expr, depth)
            key, item = self.var("k"), self.var("x")
            self.emit(depth, f"if type({v}) is not dict:")
            self.fail(depth + 1, path)
            self.flush(depth)
            self.emit(depth, f"if {v}:")
            self.length(f"len({v})")
            self.flush(depth + 1)
            self.emit(depth + 1, f"for {key}, {item} in {v}.items():")
            if strict:
                self.emit(depth + 2, f"if not isinstance({key}, str):")
                self.fail(depth + 3, f"{path}{{}}")
            self.string(key, depth + 2)
            self.value(schema["values"], item, depth + 2, f"{path}{{}}", strict)
            self.flush(depth + 2)
            self.literal(b"\x00")
        elif t in ("record", "error"):
            self.record(schema, expr, depth, path, strict)
        else:
            raise Unsupported(f"type {t!r}")

    def string(self, expr: str, depth: int) -> None:
        # exactly fastavro's write_utf8: datum.encode(), its length, its bytes
        b = self.var("b")
        self.emit(depth, f"{b} = {expr}.encode()")
        self.length(f"len({b})")
        self.piece(b)

    def record(
        self, schema: dict[str, Any], expr: str, depth: int, path: str, strict: bool
    ) -> None:
        name = schema.get("name", "")
        if name in self._expanding:
            raise Unsupported(f"recursive type {name}")
        self._expanding.append(name)
        v = self.as_var(expr, depth)
        self.emit(depth, f"# record {name}")
        self.emit(depth, f"if type({v}) is not dict:")
        self.fail(depth + 1, path)
        if strict:  # fastavro's validator rejects a record whose "-type" names another record
            self.emit(depth, f'if "-type" in {v}:')
            self.fail(depth + 1, path)
        for field in schema["fields"]:
            fname = field["name"]
            fpath = f"{path}.{fname}" if path else fname
            if "default" in field and field["default"] is not None:
                get = f"{v}.get({fname!r}, {self.const(field['default'])})"
            elif "default" in field or (not strict and _null_allowed(field["type"])):
                get = f"{v}.get({fname!r})"  # fastavro writes the default / null when missing
            else:
                get = f"{v}[{fname!r}]"  # missing: KeyError -> fastavro raises the real error
            self.value(field["type"], get, depth, fpath, strict)
        self._expanding.pop()

    def union(self, branches: list[Any], expr: str, depth: int, path: str, strict: bool) -> None:
        v = self.as_var(expr, depth)
        resolved = [self.resolve(b) for b in branches]
        types = [self.type_of(b) for b in resolved]
        if "union" in types:
            raise Unsupported("union inside a union")

        def index(i: int) -> bytes:
            return _VARINT[2 * i]

        # Without loops in any branch, each branch leaves its bytes in one variable and the
        # straight-line run of pieces goes on; with loops, branches write to ``out`` themselves.
        inline = not any(self.loops(b, set()) for b in resolved)
        result = self.var("u")
        outer = self.pending

        def choose(i: int, d: int, value_expr: str, branch_strict: bool) -> None:
            self.pending = []
            self.literal(index(i))
            checked = branch_strict and value_expr == v
            self.value(resolved[i], value_expr, d, path, branch_strict, checked)
            if inline:
                self.emit(d, f"{result} = {_concat(self.pending)}")
                self.pending = []
            else:
                self.flush(d)

        def chain(d: int, options: list[tuple[str | None, Callable[[int], None]]]) -> None:
            """if/elif over (condition or None for "always", body); raise when none applies."""
            for n, (cond, body) in enumerate(options):
                if cond is None:
                    if n:
                        self.emit(d, "else:")
                        body(d + 1)
                    else:
                        body(d)
                    return
                self.emit(d, f"{'elif' if n else 'if'} {cond}:")
                body(d + 1)
            if options:
                self.emit(d, "else:")
                self.fail(d + 1, path)
            else:
                self.fail(d, path)

        def pick(i: int, value_expr: str = v, branch_strict: bool = True) -> Callable[[int], None]:
            return lambda d: choose(i, d, value_expr, branch_strict)

        # fastavro tries tuple notation first, then the first branch that validates; the Python
        # type tests below are mutually exclusive, so their order does not matter.
        cases: list[tuple[str | None, Callable[[int], None]]] = []

        if "null" in types:
            null = index(types.index("null"))

            def write_null(d: int) -> None:
                self.pending = []
                self.literal(null)
                if inline:
                    self.emit(d, f"{result} = {null!r}")
                    self.pending = []
                else:
                    self.flush(d)

            cases.append((f"{v} is None", write_null))

        texts: list[tuple[str | None, Callable[[int], None]]] = []
        for i, t in enumerate(types):
            if t == "enum":
                symbols = self.const(frozenset(resolved[i]["symbols"]))
                texts.append((f"{v} in {symbols}", pick(i)))
            elif t == "string":
                texts.append((None, pick(i)))
                break
        if texts:
            cases.append((f"isinstance({v}, str)", lambda d: chain(d, texts)))

        def numbers(from_int: bool) -> list[tuple[str | None, Callable[[int], None]]]:
            out: list[tuple[str | None, Callable[[int], None]]] = []
            for i, t in enumerate(types):
                if t in ("int", "long") and from_int:
                    lo, hi = (_INT_MIN, _INT_MAX) if t == "int" else (_LONG_MIN, _LONG_MAX)
                    last = all(u not in ("int", "long", "float", "double") for u in types[i + 1 :])
                    # the last candidate needs no range test: the long code raises past int64
                    out.append((None if last and t == "long" else f"{lo} <= {v} <= {hi}", pick(i)))
                elif t in ("float", "double"):
                    if t == "float":  # fastavro prefers a later double over a float
                        i = next((j for j in range(i + 1, len(types)) if types[j] == "double"), i)
                    out.append((None, pick(i)))
                    break
            return out

        if any(t in ("int", "long", "float", "double") for t in types):
            cases.append((f"type({v}) is int", lambda d: chain(d, numbers(True))))
            if any(t in ("float", "double") for t in types):
                cases.append((f"type({v}) is float", lambda d: chain(d, numbers(False))))

        if "boolean" in types:  # a bool validates as nothing else (not even int/long/double)
            cases.append((f"type({v}) is bool", pick(types.index("boolean"))))

        binary: list[tuple[str | None, Callable[[int], None]]] = []
        for i, t in enumerate(types):
            if t == "fixed":
                binary.append((f"len({v}) == {int(resolved[i]['size'])}", pick(i)))
            elif t == "bytes":
                binary.append((None, pick(i)))
                break
        if binary:
            cases.append((f"type({v}) is bytes", lambda d: chain(d, binary)))

        arrays = [i for i, t in enumerate(types) if t == "array"]
        if len(arrays) == 1:  # several: fastavro picks by validating the items; it decides
            cases.append((f"type({v}) is list", pick(arrays[0])))

        maps = [i for i, t in enumerate(types) if t == "map"]
        if len(maps) == 1 and not any(t in ("record", "error") for t in types):
            cases.append((f"type({v}) is dict", pick(maps[0])))

        if not strict:  # tuple notation: (branch name, value), the first branch with that name
            tname, tvalue = self.var("tn"), self.var("tv")
            named: list[tuple[str | None, Callable[[int], None]]] = []
            seen: set[str] = set()
            for i, branch in enumerate(branches):
                bname = _branch_name(branch)
                if isinstance(bname, str) and bname not in seen:
                    seen.add(bname)
                    named.append((f"{tname} == {bname!r}", pick(i, tvalue, False)))

            def write_named(d: int) -> None:
                self.emit(d, f"if len({v}) != 2:")
                self.fail(d + 1, path)
                self.emit(d, f"{tname}, {tvalue} = {v}")
                chain(d, named)

            cases.append((f"type({v}) is tuple", write_named))

        if not inline:
            self.flush(depth)
            outer = []
        chain(depth, cases)
        self.pending = outer
        if inline:
            self.piece(result)

    def loops(self, schema: Any, seen: set[str]) -> bool:
        """Whether writing ``schema`` needs a loop (an array or map anywhere inside)."""
        schema = self.resolve(schema)
        t = self.type_of(schema)
        if t in ("array", "map"):
            return True
        if t == "union":
            return any(self.loops(b, seen) for b in schema)
        if t in ("record", "error"):
            name = schema.get("name", "")
            if name in seen:
                return True
            seen = seen | {name}
            return any(self.loops(f["type"], seen) for f in schema["fields"])
        return False


def _concat(pieces: list[str]) -> str:
    """One bytes expression from several pieces."""
    if not pieces:
        return 'b""'
    if len(pieces) == 1:
        return pieces[0]
    if len(pieces) <= 3:
        return " + ".join(f"({p})" if " if " in p else p for p in pieces)
    return f'b"".join(({", ".join(pieces)},))'


def _null_allowed(field_type: Any) -> bool:
    """fastavro's ``"null" in field_type`` test for a missing field without a default."""
    try:
        return "null" in field_type
    except TypeError:
        return False


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class CompiledEncoder:
    """A schema's generated encoders: ``encode(datum, prefix=b"") -> bytes``, or they raise."""

    name: str
    source: str
    """The generated Python source (also registered with :mod:`linecache` for tracebacks)."""
    encode: Callable[..., bytes]
    """Lengths and counts from a table: raises ``IndexError`` for a string of 8 KiB or more."""
    encode_large: Callable[..., bytes]
    """The same with a range test on every length: the retry after an ``IndexError``."""


_SEQ = itertools.count(1)


def _function(parsed_schema: Any, func: str, large: bool) -> tuple[str, dict[str, Any]]:
    comp = _Compiler(parsed_schema, large)
    comp.value(parsed_schema, "d", 1, "", False)
    comp.flush(1)
    lines = [f'def {func}(d, prefix=b""):', "    out = [prefix]", *comp.lines]
    lines.append('    return b"".join(out)')
    return "\n".join(lines) + "\n", comp.consts


def compile_encoder(parsed_schema: Any, name: str | None = None) -> CompiledEncoder | None:
    """Generate and compile the encoders for a fastavro-parsed schema; None if not covered."""
    if name is None:
        full = parsed_schema.get("name", "") if isinstance(parsed_schema, dict) else ""
        name = full.rsplit(".", 1)[-1] or "datum"
    try:
        fast, consts = _function(parsed_schema, "encode", False)
        large, _ = _function(parsed_schema, "encode_large", True)  # same constants, same order
    except (Unsupported, KeyError, TypeError, ValueError, AttributeError):
        return None
    source = f"# generated by streams.codecs.compiled for {name}\n\n{fast}\n\n{large}"
    filename = f"<avro-encoder-{name}-{next(_SEQ)}>"
    namespace: dict[str, Any] = {**_RUNTIME, **consts}
    try:
        code = compile(source, filename, "exec")
    except (SyntaxError, RecursionError, MemoryError):  # e.g. too deeply nested blocks
        return None
    exec(code, namespace)  # noqa: S102 - our own generated source, no outside input
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return CompiledEncoder(name, source, namespace["encode"], namespace["encode_large"])


# --------------------------------------------------------------------------- error messages


def locate_error(datum: Any, parsed_schema: Any) -> str | None:
    """``"path: problem"`` for the first value in ``datum`` that cannot be written, if found.

    Only used after fastavro has refused the record, to say *where*; mirrors the writer's rules
    loosely (it is a message, not a validator).
    """
    try:
        return _locate(datum, parsed_schema, _named_types(parsed_schema), "", 0)
    except Exception:  # never let the diagnosis hide the real error
        return None


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _locate(v: Any, s: Any, named: dict[str, Any], path: str, depth: int) -> str | None:
    if depth > 64:
        return None
    where = path or "record"
    if isinstance(s, str) and s in named:
        s = named[s]
    if isinstance(s, list):
        return _locate_union(v, s, named, path, depth)
    t = s.get("type") if isinstance(s, dict) else s
    if isinstance(t, dict | list):
        return _locate(v, t, named, path, depth + 1)
    if t in ("null", "boolean"):
        return None  # fastavro writes anything here
    if t == "string":
        if not isinstance(v, str):
            return f"{where}: expected a string, got {_describe(v)}"
        try:
            v.encode()
        except UnicodeEncodeError as exc:
            return f"{where}: string is not encodable as UTF-8 ({exc.reason})"
        return None
    if t in ("int", "long"):
        if type(v) is bool or not isinstance(v, int):
            return f"{where}: expected an integer ({t}), got {_describe(v)}"
        lo, hi = (_INT_MIN, _INT_MAX) if t == "int" else (_LONG_MIN, _LONG_MAX)
        if not lo <= v <= hi:
            return f"{where}: {v} is out of range for an Avro {t}"
        return None
    if t in ("float", "double"):
        if type(v) is bool or not isinstance(v, int | float):
            return f"{where}: expected a number ({t}), got {_describe(v)}"
        return None
    if t == "bytes":
        if not isinstance(v, bytes | bytearray | memoryview):
            return f"{where}: expected bytes, got {_describe(v)}"
        return None
    if t == "fixed":
        if not isinstance(v, bytes) or len(v) != s["size"]:
            return f"{where}: expected {s['size']} bytes (fixed {s.get('name')})"
        return None
    if t == "enum":
        if v not in s["symbols"]:
            return f"{where}: {v!r} is not one of {s['symbols']}"
        return None
    if t == "array":
        if not isinstance(v, list):
            return f"{where}: expected an array (list), got {_describe(v)}"
        for i, item in enumerate(v):
            found = _locate(item, s["items"], named, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if t == "map":
        if not isinstance(v, Mapping):
            return f"{where}: expected a map (dict), got {_describe(v)}"
        for key, item in v.items():
            if not isinstance(key, str):
                return f"{where}: map key {key!r} is not a string"
            found = _locate(item, s["values"], named, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if t in ("record", "error"):
        if not isinstance(v, Mapping):
            return f"{where}: expected a record (dict), got {_describe(v)}"
        for field in s["fields"]:
            fname = field["name"]
            fpath = f"{path}.{fname}" if path else fname
            if fname not in v and "default" not in field and not _null_allowed(field["type"]):
                return f"{fpath}: missing required field"
            found = _locate(
                v.get(fname, field.get("default")), field["type"], named, fpath, depth + 1
            )
            if found:
                return found
        return None
    return None


def _locate_union(
    v: Any, branches: list[Any], named: dict[str, Any], path: str, depth: int
) -> str | None:
    where = path or "record"
    names = [_branch_name(b) for b in branches]
    if isinstance(v, tuple) and len(v) == 2:
        bname, inner = v
        for branch, n in zip(branches, names, strict=True):
            if n == bname:
                return _locate(inner, branch, named, path, depth + 1)
        return f"{where}: union branch {bname!r} is not one of {names}"
    for branch, n in zip(branches, names, strict=True):
        if n == "null":
            if v is None:
                return None
            continue
        if n == "boolean":
            if isinstance(v, bool):
                return None
            continue
        if _locate(v, branch, named, path, depth + 1) is None:
            return None
    return f"{where}: a {_describe(v)} value matches none of the union branches {names}"
