"""The exact shape of a Cerbos policy document, checked before anything is compiled.

Cerbos reads a policy file into the protobuf message `cerbos.policy.v1.Policy` and refuses the
file when a key is unknown, a value has the wrong type or a protovalidate rule fails. A lenient
reader fails open: a misspelled `condtion:` would silently turn a conditional rule into an
unconditional one. This module restates those messages (field names, types and rules of
`policy.proto` as shipped with Cerbos 0.55) and applies Cerbos' YAML-to-protobuf rules:

- a key is the field's JSON name (`importDerivedRoles`) or its proto name
  (`import_derived_roles`); the checked document uses the JSON name;
- a string field takes a string, an integer (`version: 1` is `"1"`), a boolean (`"true"`) or
  null (`""`); a boolean field only a boolean; an enum field its value name, its number or null
  (unspecified); lists, maps and messages must be exactly that (null is an error there);
  `google.protobuf.Value` takes anything;
- a field set twice (also under both names) and two members of one `oneof` are errors;
- then protovalidate's rules: required, patterns (RE2 semantics: ASCII `\\w`, `$` at the very
  end), lengths, unique items, allowed enum values, exactly-one-of.

`check_policy(doc)` returns the normalised document (JSON names; strings coerced; enum names;
fields holding their proto default dropped, as protobuf would) and the problems as
`(path, message)` pairs, with paths like `resourcePolicy.rules[0].condtion` (keys as written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Issue = tuple[str, str]

# --- field kinds ---------------------------------------------------------------------------------

STRING = "string"
BOOL = "bool"
ENUM = "enum"
MESSAGE = "message"
VALUE = "value"  # google.protobuf.Value: any JSON value
UINT64_VALUE = "uint64value"  # google.protobuf.UInt64Value
TIMESTAMP = "timestamp"  # google.protobuf.Timestamp: an RFC 3339 string


@dataclass(frozen=True, slots=True)
class Field:
    """One protobuf field: kind, shape (single, repeated, map<string, _>) and its rules.

    For repeated and map fields the item rules (`pattern`, `min_len`, `enum_in`) apply to each
    item; `required` means "set to a non-default value" (non-empty for lists and maps)."""

    kind: str
    ref: str = ""  # message name for MESSAGE, enum name for ENUM
    repeated: bool = False
    map: bool = False
    oneof: str = ""
    required: bool = False
    const: str | None = None
    pattern: str | None = None
    min_len: int = 0
    min_items: int = 0
    unique: bool = False
    enum_in: tuple[str, ...] | None = None
    proto_name: str = ""  # when not the snake_case of the JSON name


@dataclass(frozen=True, slots=True)
class Message:
    """A message's fields; `required_oneofs` must have one member set; of each group in
    `any_of` one field must be set (protovalidate message rules of the test-suite messages)."""

    fields: dict[str, Field]
    required_oneofs: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()
    not_both: tuple[tuple[str, str], ...] = ()


def _f(kind: str, ref: str = "", **rules: Any) -> Field:
    return Field(kind, ref, **rules)


def _s(**rules: Any) -> Field:
    return Field(STRING, **rules)


def _strs(**rules: Any) -> Field:
    return Field(STRING, repeated=True, **rules)


def _msg(ref: str, **rules: Any) -> Field:
    return Field(MESSAGE, ref, **rules)


def _msgs(ref: str, **rules: Any) -> Field:
    return Field(MESSAGE, ref, repeated=True, **rules)


ENUMS: dict[str, tuple[str, ...]] = {  # value names by number
    "Effect": ("EFFECT_UNSPECIFIED", "EFFECT_ALLOW", "EFFECT_DENY", "EFFECT_NO_MATCH"),
    "ScopePermissions": (
        "SCOPE_PERMISSIONS_UNSPECIFIED",
        "SCOPE_PERMISSIONS_OVERRIDE_PARENT",
        "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS",
    ),
}

# Patterns of policy.proto (RE2; `\w` is ASCII there, see `_compile`).
_NAME_KIND = r"^[^!*?\[\]{}]+$"  # resource kind, principal, role
_VERSION = r"^[\w]+$"
_SET_NAME = r"^[\w\-\.]+$"  # derived role sets and names, export names, imports
_SCOPE = r"^(^$|\.|[0-9a-zA-Z][\w\-]*(\.\w[\w\-]*)*)$"
_RULE_NAME = r"^([a-zA-Z][\w\@\.\-]*)*$"
_EFFECTS = ("EFFECT_ALLOW", "EFFECT_DENY")

_POLICY_TYPES = (
    "resourcePolicy",
    "principalPolicy",
    "derivedRoles",
    "exportVariables",
    "rolePolicy",
    "exportConstants",
)

MESSAGES: dict[str, Message] = {
    "Policy": Message(
        {
            "apiVersion": _s(required=True, const="api.cerbos.dev/v1"),
            "disabled": _f(BOOL),
            "description": _s(),
            "metadata": _msg("Metadata"),
            **{t: _msg(t[0].upper() + t[1:], oneof="policyType") for t in _POLICY_TYPES},
            "variables": _s(map=True),  # deprecated top-level variables
            "$schema": _s(proto_name="json_schema"),
        },
        required_oneofs=("policyType",),
    ),
    "Metadata": Message(
        {
            "sourceFile": _s(),
            "annotations": _s(map=True),
            "hash": _f(UINT64_VALUE),
            "storeIdentifer": _s(),
            "storeIdentifier": _s(),
            "sourceAttributes": _msg("SourceAttributes"),
        }
    ),
    "SourceAttributes": Message({"attributes": _f(VALUE, map=True)}),
    "ResourcePolicy": Message(
        {
            "resource": _s(required=True, pattern=_NAME_KIND),
            "version": _s(required=True, pattern=_VERSION),
            "importDerivedRoles": _strs(unique=True, pattern=_SET_NAME),
            "rules": _msgs("ResourceRule"),
            "scope": _s(pattern=_SCOPE),
            "schemas": _msg("Schemas"),
            "variables": _msg("Variables"),
            "scopePermissions": _f(ENUM, "ScopePermissions"),
            "constants": _msg("Constants"),
        }
    ),
    "ResourceRule": Message(
        {
            "actions": _strs(required=True, min_items=1, unique=True, min_len=1),
            "derivedRoles": _strs(unique=True, pattern=_SET_NAME),
            "roles": _strs(unique=True, min_len=1),
            "condition": _msg("Condition"),
            "effect": _f(ENUM, "Effect", required=True, enum_in=_EFFECTS),
            "name": _s(pattern=_RULE_NAME),
            "output": _msg("Output"),
        }
    ),
    "RolePolicy": Message(
        {
            "role": _s(pattern=_NAME_KIND, oneof="policyType"),
            "version": _s(pattern=r"^[\w]*$"),
            "parentRoles": _strs(unique=True, min_len=1),
            "scope": _s(pattern=_SCOPE),
            "rules": _msgs("RoleRule"),
            "scopePermissions": _f(
                ENUM,
                "ScopePermissions",
                enum_in=(
                    "SCOPE_PERMISSIONS_UNSPECIFIED",
                    "SCOPE_PERMISSIONS_REQUIRE_PARENTAL_CONSENT_FOR_ALLOWS",
                ),
            ),
            "variables": _msg("Variables"),
            "constants": _msg("Constants"),
        },
        required_oneofs=("policyType",),
    ),
    "RoleRule": Message(
        {
            "resource": _s(required=True, min_len=1),
            "allowActions": _strs(required=True, min_items=1, unique=True, min_len=1),
            "condition": _msg("Condition"),
            "name": _s(pattern=_RULE_NAME),
            "output": _msg("Output"),
        }
    ),
    "PrincipalPolicy": Message(
        {
            "principal": _s(required=True, pattern=_NAME_KIND),
            "version": _s(required=True, pattern=_VERSION),
            "rules": _msgs("PrincipalRule"),
            "scope": _s(pattern=_SCOPE),
            "variables": _msg("Variables"),
            "scopePermissions": _f(ENUM, "ScopePermissions"),
            "constants": _msg("Constants"),
        }
    ),
    "PrincipalRule": Message(
        {
            "resource": _s(required=True, min_len=1),
            "actions": _msgs("PrincipalRuleAction", required=True, min_items=1),
        }
    ),
    "PrincipalRuleAction": Message(
        {
            "action": _s(required=True, min_len=1),
            "condition": _msg("Condition"),
            "effect": _f(ENUM, "Effect", required=True, enum_in=_EFFECTS),
            "name": _s(pattern=_RULE_NAME),
            "output": _msg("Output"),
        }
    ),
    "DerivedRoles": Message(
        {
            "name": _s(required=True, min_len=1, pattern=_SET_NAME),
            "definitions": _msgs("RoleDef", required=True, min_items=1),
            "variables": _msg("Variables"),
            "constants": _msg("Constants"),
        }
    ),
    "RoleDef": Message(
        {
            "name": _s(required=True, pattern=_SET_NAME),
            "parentRoles": _strs(required=True, min_items=1, unique=True, min_len=1),
            "condition": _msg("Condition"),
        }
    ),
    "ExportConstants": Message(
        {
            "name": _s(required=True, min_len=1, pattern=_SET_NAME),
            "definitions": _f(VALUE, map=True),
        }
    ),
    "ExportVariables": Message(
        {
            "name": _s(required=True, min_len=1, pattern=_SET_NAME),
            "definitions": _s(map=True),
        }
    ),
    "Constants": Message(
        {"import": _strs(unique=True, pattern=_SET_NAME), "local": _f(VALUE, map=True)}
    ),
    "Variables": Message({"import": _strs(unique=True, pattern=_SET_NAME), "local": _s(map=True)}),
    "Condition": Message(
        {"match": _msg("Match", oneof="condition"), "script": _s(oneof="condition")},
        required_oneofs=("condition",),
    ),
    "Match": Message(
        {
            "all": _msg("ExprList", oneof="op"),
            "any": _msg("ExprList", oneof="op"),
            "none": _msg("ExprList", oneof="op"),
            "expr": _s(oneof="op"),
        },
        required_oneofs=("op",),
    ),
    "ExprList": Message({"of": _msgs("Match", required=True, min_items=1)}),
    "Output": Message({"expr": _s(), "when": _msg("OutputWhen")}),
    "OutputWhen": Message({"ruleActivated": _s(), "conditionNotMet": _s()}),
    "Schemas": Message({"principalSchema": _msg("SchemaRef"), "resourceSchema": _msg("SchemaRef")}),
    "SchemaRef": Message({"ref": _s(required=True, min_len=1), "ignoreWhen": _msg("IgnoreWhen")}),
    "IgnoreWhen": Message({"actions": _strs(required=True, min_items=1, unique=True, min_len=1)}),
}

_NAMES = {"unique": True, "min_len": 1}  # lists of fixture names

#: Test suites (`*_test.yaml`) and their fixtures (`testdata/*.yaml`): `cerbos.policy.v1.TestSuite`,
#: `TestFixture.*` and the `cerbos.engine.v1` messages they hold.
TEST_MESSAGES: dict[str, Message] = {
    "TestSuite": Message(
        {
            "name": _s(required=True, min_len=1),
            "description": _s(),
            "skip": _f(BOOL),
            "skipReason": _s(),
            "tests": _msgs("TestTable", required=True, min_items=1),
            "principals": _msg("Principal", map=True),
            "resources": _msg("Resource", map=True),
            "auxData": _msg("AuxData", map=True),
            "options": _msg("TestOptions"),
            "$schema": _s(proto_name="json_schema"),
            "principalGroups": _msg("PrincipalGroup", map=True),
            "resourceGroups": _msg("ResourceGroup", map=True),
        }
    ),
    "TestTable": Message(
        {
            "name": _s(required=True, min_len=1),
            "description": _s(),
            "skip": _f(BOOL),
            "skipReason": _s(),
            "input": _msg("TestInput", required=True),
            "expected": _msgs("Expectation", required=True, min_items=1),
            "options": _msg("TestOptions"),
        }
    ),
    "TestInput": Message(
        {
            "principals": _strs(**_NAMES),
            "resources": _strs(**_NAMES),
            "actions": _strs(required=True, min_items=1, **_NAMES),
            "auxData": _s(),
            "principalGroups": _strs(**_NAMES),
            "resourceGroups": _strs(**_NAMES),
        },
        any_of=(("principals", "principalGroups"), ("resources", "resourceGroups")),
    ),
    "Expectation": Message(
        {
            "principal": _s(),
            "resource": _s(),
            "actions": _f(ENUM, "Effect", map=True, required=True, enum_in=_EFFECTS),
            "outputs": _msgs("OutputExpectations"),
            "principals": _strs(**_NAMES),
            "resources": _strs(**_NAMES),
            "principalGroups": _strs(**_NAMES),
            "resourceGroups": _strs(**_NAMES),
        },
        any_of=(
            ("principal", "principals", "principalGroups"),
            ("resource", "resources", "resourceGroups"),
        ),
        not_both=(("principal", "principals"), ("resource", "resources")),
    ),
    "OutputExpectations": Message(
        {
            "action": _s(required=True, min_len=1),
            "expected": _msgs("OutputEntry", required=True, min_items=1),
        }
    ),
    "OutputEntry": Message({"src": _s(), "val": _f(VALUE), "action": _s(), "error": _s()}),
    "TestOptions": Message(
        {
            "now": _f(TIMESTAMP),
            "lenientScopeSearch": _f(BOOL),
            "globals": _f(VALUE, map=True),
            "defaultPolicyVersion": _s(),
            "defaultScope": _s(),
            "strictEvaluation": _f(BOOL),
        }
    ),
    "Principal": Message(
        {
            "id": _s(required=True, min_len=1),
            "policyVersion": _s(pattern=r"^[\w]*$"),
            "roles": _strs(required=True, min_items=1, **_NAMES),
            "attr": _f(VALUE, map=True),
            "scope": _s(pattern=_SCOPE),
        }
    ),
    "Resource": Message(
        {
            "kind": _s(required=True, min_len=1),
            "policyVersion": _s(pattern=r"^[\w]*$"),
            "id": _s(required=True, min_len=1),
            "attr": _f(VALUE, map=True),
            "scope": _s(pattern=_SCOPE),
        }
    ),
    "AuxData": Message({"jwt": _f(VALUE, map=True), "jwts": _msg("AuxDataJwt", map=True)}),
    "AuxDataJwt": Message({"claims": _f(VALUE, map=True)}),
    "PrincipalGroup": Message({"principals": _strs(required=True, min_items=1, **_NAMES)}),
    "ResourceGroup": Message({"resources": _strs(required=True, min_items=1, **_NAMES)}),
    "PrincipalFixtures": Message(
        {
            "principals": _msg("Principal", map=True),
            "$schema": _s(proto_name="json_schema"),
            "principalGroups": _msg("PrincipalGroup", map=True),
        }
    ),
    "ResourceFixtures": Message(
        {
            "resources": _msg("Resource", map=True),
            "$schema": _s(proto_name="json_schema"),
            "resourceGroups": _msg("ResourceGroup", map=True),
        }
    ),
    "AuxDataFixtures": Message(
        {"auxData": _msg("AuxData", map=True), "$schema": _s(proto_name="json_schema")}
    ),
}
MESSAGES.update(TEST_MESSAGES)


# --- checking ------------------------------------------------------------------------------------

_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    """RE2 semantics in Python: ASCII classes, and `$` only at the very end of the text."""
    found = _PATTERNS.get(pattern)
    if found is None:
        found = re.compile(pattern.replace("$", r"\Z"), re.ASCII)
        _PATTERNS[pattern] = found
    return found


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), name)


_BY_NAME: dict[str, dict[str, str]] = {}  # message -> {JSON or proto name: JSON name}


def _names(message: str) -> dict[str, str]:
    found = _BY_NAME.get(message)
    if found is None:
        found = {}
        for json_name, spec in MESSAGES[message].fields.items():
            found[json_name] = json_name
            found[spec.proto_name or _snake(json_name)] = json_name
        _BY_NAME[message] = found
    return found


def yaml_type(value: Any) -> str:
    """The YAML node type Cerbos names in its messages (`expected string value got Sequence`)."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Sequence"
    if isinstance(value, dict):
        return "Mapping"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Checker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def issue(self, path: str, message: str) -> None:
        self.issues.append((path, message))

    def message(self, path: str, value: Any, name: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.issue(path, f"expected object got {yaml_type(value)}")
            return None
        spec = MESSAGES[name]
        names = _names(name)
        out: dict[str, Any] = {}
        written: dict[str, str] = {}
        oneofs: dict[str, str] = {}
        for key, raw in value.items():
            kpath = _join(path, str(key))
            if not isinstance(key, str):
                self.issue(kpath, f"unexpected key type {yaml_type(key)}")
                continue
            json_name = names.get(key)
            if json_name is None:
                self.issue(kpath, f'unknown field "{key}"')
                continue
            if json_name in written:
                self.issue(kpath, f"duplicate field definition (also set as {written[json_name]})")
                continue
            written[json_name] = key
            field = spec.fields[json_name]
            if field.oneof:
                if field.oneof in oneofs:
                    self.issue(
                        kpath,
                        f"invalid value: oneof field {field.oneof} is already set "
                        f"by {oneofs[field.oneof]}",
                    )
                    continue
                oneofs[field.oneof] = key
            ok, checked = self.field(kpath, raw, field)
            if not ok:
                continue
            if field.oneof or not _is_default(checked, field):
                out[json_name] = checked
        for json_name, field in spec.fields.items():
            if field.required and json_name not in out and json_name not in written:
                self.issue(_join(path, json_name), "value is required")
        present = {k for k, v in out.items() if v not in ("", [], {})}
        for names_ in spec.any_of:
            if not present.intersection(names_):
                self.issue(path, f"{', '.join(names_[:-1])} or {names_[-1]} must be present")
        for a, b in spec.not_both:
            if a in present and b in present:
                self.issue(path, f"{a} and {b} may not both be present")
        for group in spec.required_oneofs:
            if group not in oneofs:
                members = [n for n, f in spec.fields.items() if f.oneof == group]
                self.issue(
                    _join(path, group),
                    f"exactly one field is required in oneof ({', '.join(members)})",
                )
        return out

    def field(self, path: str, raw: Any, field: Field) -> tuple[bool, Any]:
        """Check one field's value; (False, None) when it had a type error."""
        if field.repeated:
            if not isinstance(raw, list):
                self.issue(path, f"expected sequence got {yaml_type(raw)}")
                return False, None
            items = []
            for i, item in enumerate(raw):
                ok, checked = self.single(f"{path}[{i}]", item, field)
                if ok:
                    items.append(checked)
            if len(items) != len(raw):
                return False, None
            self.collection_rules(path, items, field)
            return True, items
        if field.map:
            if not isinstance(raw, dict):
                self.issue(path, f"expected map got {yaml_type(raw)}")
                return False, None
            entries: dict[str, Any] = {}
            ok_all = True
            for key, item in raw.items():
                kpath = _join(path, str(key))
                if not isinstance(key, str):
                    self.issue(kpath, f"expected string got {yaml_type(key)}")
                    ok_all = False
                    continue
                ok, checked = self.single(kpath, item, field)
                ok_all = ok_all and ok
                entries[key] = checked
            if not ok_all:
                return False, None
            self.collection_rules(path, list(entries.values()), field)
            return True, entries
        ok, checked = self.single(path, raw, field)
        if ok and field.required and _is_default(checked, field):
            self.issue(path, "value is required")
        return ok, checked

    def collection_rules(self, path: str, items: list[Any], field: Field) -> None:
        if field.required and not items:
            self.issue(path, "value is required")
        elif len(items) < field.min_items:
            self.issue(path, f"must contain at least {field.min_items} item(s)")
        if field.unique and len({repr(i) for i in items}) != len(items):
            self.issue(path, "repeated value must contain unique items")

    def single(self, path: str, raw: Any, field: Field) -> tuple[bool, Any]:
        kind = field.kind
        if kind == MESSAGE:
            checked = self.message(path, raw, field.ref)
            return checked is not None, checked
        if kind == VALUE:
            return True, raw
        if kind == UINT64_VALUE:
            if isinstance(raw, bool) or not isinstance(raw, int | str) or not _uint(raw):
                self.issue(path, f"failed to parse value: invalid UInt64Value {raw!r}")
                return False, None
            return True, int(raw)
        if kind == TIMESTAMP:
            if not isinstance(raw, str) or not _RFC3339.match(raw):
                self.issue(
                    path, f"failed to parse value: invalid google.protobuf.Timestamp {raw!r}"
                )
                return False, None
            return True, raw
        if kind == BOOL:
            if not isinstance(raw, bool):
                self.issue(path, f"expected boolean value got {yaml_type(raw)}")
                return False, None
            return True, raw
        if kind == ENUM:
            return self.enum(path, raw, field)
        value = _as_string(raw)
        if value is None:
            self.issue(path, f"expected string value got {yaml_type(raw)}")
            return False, None
        self.string_rules(path, value, field)
        return True, value

    def enum(self, path: str, raw: Any, field: Field) -> tuple[bool, Any]:
        names = ENUMS[field.ref]
        if raw is None:
            value = names[0]
        elif isinstance(raw, str) and raw in names:
            value = raw
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = names[raw] if 0 <= raw < len(names) else str(raw)
        else:
            shown = f" {raw!r}" if isinstance(raw, str) else ""
            self.issue(path, f"invalid enum value{shown}")
            return False, None
        if field.enum_in is not None and value not in field.enum_in and value != names[0]:
            self.issue(path, f"must be one of [{', '.join(field.enum_in)}]")
            return False, None
        if field.enum_in is None and value not in names:
            self.issue(path, f"must be one of [{', '.join(names[1:])}]")
            return False, None
        return True, value

    def string_rules(self, path: str, value: str, field: Field) -> None:
        if field.const is not None and value != field.const:
            if value == "" and field.required:
                return  # reported as "value is required"
            self.issue(path, f"must equal `{field.const}`")
        if len(value) < field.min_len and not (value == "" and field.required):
            self.issue(path, f"must be at least {field.min_len} characters")
        bad = field.pattern is not None and not _compile(field.pattern).search(value)
        if bad and not (value == "" and field.required):
            self.issue(path, f"does not match regex pattern `{field.pattern}`")


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\Z")


def _uint(raw: int | str) -> bool:
    text = str(raw).strip()
    return text.isdigit() and int(text) < 2**64


def _as_string(raw: Any) -> str | None:
    """Cerbos' string coercion: strings, integers, booleans (`true`/`false`) and null (``)."""
    if isinstance(raw, str):
        return raw
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return str(raw)
    return None


def _is_default(value: Any, field: Field) -> bool:
    """Proto3 default: unset for scalars; ENUMS' value 0 is "unspecified"."""
    if field.repeated or field.map:
        return False
    if field.kind == STRING:
        return value == ""
    if field.kind == ENUM:
        return value == ENUMS[field.ref][0]
    return False


def check_document(doc: Any, message: str) -> tuple[dict[str, Any] | None, list[Issue]]:
    """Check a parsed document against one of `MESSAGES`; the normalised document is None when
    there are issues."""
    checker = _Checker()
    out = checker.message("", doc, message)
    if out is None:
        return None, [("", "invalid document: contents are not valid YAML or JSON mapping")]
    return (None if checker.issues else out), checker.issues


def check_policy(doc: Any) -> tuple[dict[str, Any] | None, list[Issue]]:
    """Check a parsed policy document against `cerbos.policy.v1.Policy`; see the module doc."""
    return check_document(doc, "Policy")
