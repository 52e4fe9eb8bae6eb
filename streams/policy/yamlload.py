"""Read policy files the way Cerbos' YAML parser does, not the way PyYAML does by default.

Two differences matter for a strict reader. PyYAML silently keeps the last of two equal keys,
while Cerbos refuses the file; and PyYAML follows YAML 1.1, where `on`/`yes`/`no` are booleans,
`2024-01-01` is a date and `010` is octal, while Cerbos' parser uses YAML 1.2 core scalars
(`on` is the string "on"). Anchors, aliases and `<<` merge keys work as in Cerbos.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ValueError):
    """A key written twice in one mapping; `path` locates the second one."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit scalars."""


_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", "~nN"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    (MERGE_TAG, r"^(?:<<)$", "<"),
):
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regexp), list(_first))
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


def _check_duplicates(node: yaml.Node, path: str) -> None:
    """Refuse a mapping that writes one key twice (merged `<<` keys may be overridden)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                name = str(key.value)
                sub = f"{path}.{name}" if path else name
                if key.tag != MERGE_TAG:
                    ident = (key.tag, name)
                    if ident in seen:
                        mark = seen[ident]
                        raise DuplicateKeyError(
                            sub,
                            f'mapping key "{name}" already defined at line {mark.line + 1}',
                        )
                    seen[ident] = key.start_mark
                _check_duplicates(value, sub)
            else:
                _check_duplicates(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{path}[{i}]")


def load_yaml_documents(raw: bytes | str) -> Iterator[Any]:
    """Every document of a YAML stream (YAML 1.2 core scalars, duplicate keys refused)."""
    loader = _Yaml12Loader(raw)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                _check_duplicates(node, "")
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError("", f'mapping key "{key}" already defined')
        out[key] = value
    return out


def load_json(raw: bytes | str) -> Any:
    """A JSON document; a key written twice in one object is refused, as in Cerbos."""
    return json.loads(raw, object_pairs_hook=_no_duplicates)
