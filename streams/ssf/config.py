"""The ``--ssf-config`` file (env ``VIGIL_SSF_CONFIG``): who may send us SETs and how.

Fail closed (DESIGN invariant 8): an unknown key, a wrong type, an unset ``${VAR}`` or a
transmitter without what its delivery method needs refuses the whole file, with the path of
the problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Signature algorithms a transmitter may be allowed (asymmetric JWS only; never ``none``).
SUPPORTED_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "Ed25519",
        "EdDSA",
    }
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SsfConfigError(ValueError):
    """The SSF configuration is not exactly valid; the message names the file and the path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectMapping(_Strict):
    """How a transmitter's subject identifiers become Vigil subjects (docs/shared-signals.md)."""

    principal_type: str = Field(default="user", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    #: ``auto``: the session id in session events, else the principal id
    opaque: Literal["auto", "principal", "session"] = "auto"


class Transmitter(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)
    issuer: str = Field(min_length=1)
    jwks_uri: str = Field(min_length=1)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    delivery: Literal["push", "poll"] = "push"
    push_authorization: str | None = None
    poll_endpoint: str | None = None
    poll_authorization: str | None = None
    tenant: str | None = None
    #: complex-subject members the transmitter marks critical (its ``critical_subject_members``)
    critical_subject_members: list[str] = Field(default_factory=list)
    subjects: SubjectMapping = SubjectMapping()
    #: SSF stream management: discover the transmitter, create or update our stream and
    #: verify it at start (docs/shared-signals.md, "Stream management")
    manage_stream: bool = False
    management_authorization: str | None = None
    #: our public push URL the transmitter should deliver to (push streams we manage)
    push_endpoint_url: str | None = None
    #: event type URIs to ask for (default: every type Vigil maps)
    events_requested: list[str] | None = None
    poll_max_events: int = Field(default=100, ge=1, le=10_000)
    poll_interval_seconds: float = Field(default=1.0, gt=0, le=3600)

    @field_validator("algorithms")
    @classmethod
    def _allowed(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in SUPPORTED_ALGORITHMS]
        if bad:
            raise ValueError(
                f"unsupported algorithm(s) {bad}; allowed: {sorted(SUPPORTED_ALGORITHMS)} "
                "(`none` and shared-secret algorithms are never accepted)"
            )
        return value

    @model_validator(mode="after")
    def _delivery_needs(self) -> Transmitter:
        if self.delivery == "poll" and not self.poll_endpoint:
            raise ValueError("delivery: poll needs poll_endpoint")
        if self.delivery == "push" and (self.poll_endpoint or self.poll_authorization):
            raise ValueError("poll_endpoint/poll_authorization are for delivery: poll only")
        if self.manage_stream and self.delivery == "push" and not self.push_endpoint_url:
            raise ValueError("manage_stream with delivery: push needs push_endpoint_url")
        return self

    @property
    def jwks_is_url(self) -> bool:
        return self.jwks_uri.startswith(("http://", "https://"))


class Receiver(_Strict):
    """A downstream receiver of Vigil's own SETs (push delivery, RFC 8935)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=64)
    endpoint: str = Field(pattern=r"^https?://")
    audience: str = Field(min_length=1)
    authorization: str | None = None
    max_attempts: int = Field(default=5, ge=1, le=100)
    retry_initial_seconds: float = Field(default=0.5, gt=0, le=60)


class SsfConfig(_Strict):
    audience: str = Field(min_length=1)
    transmitters: list[Transmitter] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)
    #: our ``iss`` on outbound SETs: the public base URL of the API listener (default: audience)
    issuer: str | None = None
    #: private JWKS (first key signs, all are published); needed when there are receivers
    signing_keys: Path | None = None

    @property
    def our_issuer(self) -> str:
        return self.issuer or self.audience

    @model_validator(mode="after")
    def _unique(self) -> SsfConfig:
        if self.receivers and self.signing_keys is None:
            raise ValueError("receivers need signing_keys (a private JWKS file)")
        for what, values in (
            ("transmitter name", [t.name for t in self.transmitters]),
            ("transmitter issuer", [t.issuer for t in self.transmitters]),
            ("receiver name", [r.name for r in self.receivers]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {what}: {dupes}")
        return self

    def transmitter_for(self, issuer: str) -> Transmitter | None:
        for transmitter in self.transmitters:
            if transmitter.issuer == issuer:
                return transmitter
        return None


def expand_env(value: Any, env: dict[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` in every string; an unset variable is an error naming its path."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise SsfConfigError(f"{path or '(root)'}: environment variable {name} is not set")
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def load_ssf_config(path: Path, env: dict[str, str] | None = None) -> SsfConfig:
    """Read, expand and validate the file; raise ``SsfConfigError`` naming the file and path."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SsfConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise SsfConfigError(f"{path}: must be a YAML mapping")
    try:
        expanded = expand_env(raw, dict(os.environ) if env is None else env)
        return SsfConfig.model_validate(expanded)
    except SsfConfigError as exc:
        raise SsfConfigError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise SsfConfigError(f"{path}: {problems}") from None
