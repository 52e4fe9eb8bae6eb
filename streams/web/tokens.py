"""Bearer tokens of the check API (``--api-tokens FILE``): who may call which route.

The file is YAML, parsed strictly (an unknown field, a bad route or a duplicate token refuses
the whole file at startup, invariant 8)::

    tokens:
      - name: web-pep                 # shows up in logs, never the token
        sha256: 9f86d081884c7d65...   # hex SHA-256 of the token (preferred), or
        # token: s3cret               # the token itself
        routes: [check, plan]         # default: every route

Routes: ``check`` (POST /api/check/resources), ``plan`` (POST /api/plan/resources),
``server_info`` (GET /api/server_info), ``revocations`` (GET /api/revocations/stream). Health
needs no token. Tokens are compared by their SHA-256 in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Route = Literal["check", "plan", "server_info", "revocations"]
ROUTES: tuple[Route, ...] = ("check", "plan", "server_info", "revocations")


class TokenFileError(ValueError):
    """The token file cannot be used as given (message names the file and the problem)."""


class _Token(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    token: str | None = Field(default=None, min_length=16)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    routes: list[Route] = Field(default_factory=lambda: list(ROUTES), min_length=1)

    @model_validator(mode="after")
    def _one_secret(self) -> _Token:
        if (self.token is None) == (self.sha256 is None):
            raise ValueError("exactly one of token and sha256 is required")
        return self

    def digest(self) -> bytes:
        if self.sha256 is not None:
            return bytes.fromhex(self.sha256)
        assert self.token is not None
        return hashlib.sha256(self.token.encode()).digest()


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tokens: list[_Token] = Field(min_length=1)


class ApiTokens:
    """``authorize(header, route)``: None when allowed, else (HTTP status, message)."""

    def __init__(self, entries: dict[bytes, tuple[str, frozenset[str]]]) -> None:
        self._entries = entries

    @classmethod
    def from_file(cls, path: Path) -> ApiTokens:
        try:
            raw = yaml.safe_load(path.read_text())
            parsed = _TokenFile.model_validate(raw)
        except (OSError, yaml.YAMLError) as exc:
            raise TokenFileError(f"{path}: {exc}") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise TokenFileError(f"{path}: {problems}") from None
        entries: dict[bytes, tuple[str, frozenset[str]]] = {}
        for tok in parsed.tokens:
            digest = tok.digest()
            if digest in entries:
                raise TokenFileError(f"{path}: token {tok.name!r} repeats another token")
            entries[digest] = (tok.name, frozenset(tok.routes))
        return cls(entries)

    def authorize(self, authorization: str | None, route: Route) -> tuple[int, str] | None:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 401, "missing bearer token"
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for digest, entry in self._entries.items():  # constant time per entry
            if hmac.compare_digest(digest, presented):
                found = entry
        if found is None:
            return 401, "invalid bearer token"
        if route not in found[1]:
            return 403, f"token {found[0]!r} may not call {route}"
        return None
