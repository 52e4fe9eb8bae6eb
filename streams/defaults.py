"""Where a command finds its policy directory and risk model when it runs outside the checkout.

The defaults (``policies`` and ``risk/model.yaml``) are relative paths: run from the checkout they
name its files, run anywhere else they name nothing. A default that does not exist in the current
directory falls back to the checkout's copy (the files next to the ``streams`` package), so
``vigil worker`` and ``vigil policy ...`` behave the same from any directory. A path the user set
(flag or ``VIGIL_*`` env var) is taken as written: a configured file that does not exist is an
error, never a silent fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings

#: The source checkout (or install prefix) that holds the default ``policies/`` and ``risk/``.
CHECKOUT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POLICIES = Path("policies")
DEFAULT_RISK_MODEL = Path("risk/model.yaml")


class MissingFileError(ValueError):
    """A configured policy directory or risk model file does not exist."""


@dataclass(frozen=True)
class ResolvedFiles:
    """The files a worker uses, and why (when they are not the ones in the current directory)."""

    policies: Path
    risk_model: Path | None  # None: the built-in risk model (no file anywhere)
    policies_note: str | None = None
    risk_model_note: str | None = None

    def describe(self) -> str:
        """``policies: PATH (why); risk model: PATH (why)``, for the worker's first log line."""
        risk = str(self.risk_model) if self.risk_model else "built-in defaults"
        parts = []
        for label, value, note in (
            ("policies", self.policies, self.policies_note),
            ("risk model", risk, self.risk_model_note),
        ):
            parts.append(f"{label}: {value}" + (f" ({note})" if note else ""))
        return "; ".join(parts)


def resolve_policies(configured: Path | None, explicit: bool) -> tuple[Path, str | None]:
    """The policy directory to use, and a note when it is the checkout's fallback."""
    path = Path(configured) if configured is not None else DEFAULT_POLICIES
    if explicit:
        if not path.is_dir():
            raise MissingFileError(f"policy directory {path} does not exist")
        return path.resolve(), None
    if path.is_dir():
        return path.resolve(), None
    fallback = CHECKOUT_ROOT / DEFAULT_POLICIES
    if not fallback.is_dir():
        raise MissingFileError(
            f"no ./{DEFAULT_POLICIES} here and none in {CHECKOUT_ROOT}; pass --policies DIR"
        )
    return fallback, f"./{DEFAULT_POLICIES} not found, using the checkout's"


def resolve_risk_model(configured: Path | None, explicit: bool) -> tuple[Path | None, str | None]:
    """The risk model file to use (None = built-in), and a note when it is a fallback."""
    path = Path(configured) if configured is not None else DEFAULT_RISK_MODEL
    if explicit:
        if not path.is_file():
            raise MissingFileError(f"risk model file {path} does not exist")
        return path.resolve(), None
    if path.is_file():
        return path.resolve(), None
    fallback = CHECKOUT_ROOT / DEFAULT_RISK_MODEL
    if fallback.is_file():
        return fallback, f"./{DEFAULT_RISK_MODEL} not found, using the checkout's"
    return None, f"no {DEFAULT_RISK_MODEL} found, using the built-in risk model"


def resolve_files(settings: Settings) -> ResolvedFiles:
    """Absolute policy and risk model paths for ``settings``; raises ``MissingFileError``.

    "Explicit" means set by flag, env var or keyword (pydantic's ``model_fields_set``)."""
    explicit = settings.model_fields_set
    policies, policy_note = resolve_policies(settings.policies, "policies" in explicit)
    risk, risk_note = resolve_risk_model(settings.risk_model, "risk_model" in explicit)
    return ResolvedFiles(policies, risk, policy_note, risk_note)


def with_resolved_files(settings: Settings) -> tuple[Settings, ResolvedFiles]:
    """``settings`` with absolute ``policies``/``risk_model``; raises ``MissingFileError``."""
    files = resolve_files(settings)
    update: dict[str, Path] = {"policies": files.policies}
    if files.risk_model is not None:
        update["risk_model"] = files.risk_model
    return settings.model_copy(update=update), files
