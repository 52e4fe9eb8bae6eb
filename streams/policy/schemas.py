"""JSON Schema validation of principal/resource attributes (Cerbos `schemas`).

A resource policy may declare `schemas.principalSchema` / `schemas.resourceSchema` with a `ref`
`cerbos:///<path>` into the bundle's `_schemas/` directory and `ignoreWhen.actions` (action
globs: when *every* requested action matches, that schema is not checked). Enforcement is an
engine option: `none` (never validate), `warn` (report in `CheckResult.validation_errors`) or
`reject` (report and DENY every action).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .globs import compile_action_glob
from .model import CompileIssue, ResourcePolicy

_PREFIX = "cerbos:///"


class SchemaValidator:
    """Loads the schemas referenced by resource policies; validates check inputs."""

    def __init__(self, root: Path, enforcement: str) -> None:
        self.root = root
        self.enforcement = enforcement
        self.active = False
        self._validators: dict[str, Any] = {}

    def load(self, policies: Mapping[Any, ResourcePolicy]) -> list[CompileIssue]:
        issues: list[CompileIssue] = []
        if self.enforcement == "none":
            return issues
        import jsonschema

        for pol in policies.values():
            block = pol.schemas
            if not isinstance(block, dict):
                continue
            for field in ("principalSchema", "resourceSchema"):
                sch = block.get(field)
                if not isinstance(sch, dict):
                    continue
                ref = sch.get("ref")
                path = f"resourcePolicy.schemas.{field}.ref"
                if not isinstance(ref, str) or not ref.startswith(_PREFIX):
                    issues.append(CompileIssue(pol.file, path, f"unsupported schema ref {ref!r}"))
                    continue
                if ref in self._validators:
                    continue
                base = (self.root / "_schemas").resolve()
                file = (base / ref[len(_PREFIX) :].lstrip("/")).resolve()
                if not file.is_relative_to(base):  # a bundle never reads outside its _schemas/
                    issues.append(
                        CompileIssue(pol.file, path, f"schema ref {ref!r} leaves _schemas/")
                    )
                    continue
                try:
                    raw = file.read_text()
                    doc = json.loads(raw) if file.suffix == ".json" else yaml.safe_load(raw)
                    cls = jsonschema.validators.validator_for(doc)
                    cls.check_schema(doc)
                    self._validators[ref] = cls(doc)
                except (OSError, ValueError, yaml.YAMLError) as exc:
                    issues.append(CompileIssue(pol.file, path, f"cannot load schema: {exc}"))
                except jsonschema.SchemaError as exc:
                    issues.append(CompileIssue(pol.file, path, f"invalid schema: {exc.message}"))
                self.active = True
        return issues

    def validate(
        self,
        pol: ResourcePolicy | None,
        principal: Mapping[str, Any],
        resource: Mapping[str, Any],
        actions: Sequence[str],
    ) -> tuple[list[dict[str, Any]], bool]:
        """(validation errors in Cerbos' shape, reject?)."""
        if pol is None or not isinstance(pol.schemas, dict):
            return [], False
        errors: list[dict[str, Any]] = []
        for field, source, attrs in (
            ("principalSchema", "SOURCE_PRINCIPAL", principal.get("attr") or {}),
            ("resourceSchema", "SOURCE_RESOURCE", resource.get("attr") or {}),
        ):
            sch = pol.schemas.get(field)
            if not isinstance(sch, dict):
                continue
            validator = self._validators.get(sch.get("ref", ""))
            if validator is None:
                continue
            ignore = ((sch.get("ignoreWhen") or {}).get("actions")) or []
            if ignore and actions:
                matchers = [compile_action_glob(a) for a in ignore]
                if all(any(m(a) for m in matchers) for a in actions):
                    continue
            for err in sorted(validator.iter_errors(dict(attrs)), key=lambda e: list(e.path)):
                path = "/" + "/".join(str(p) for p in err.path)
                errors.append({"path": path, "message": err.message, "source": source})
        return errors, bool(errors) and self.enforcement == "reject"
