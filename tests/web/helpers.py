"""Pieces the check API tests share: real engine and risk model, signal states built by applying
real signals, and a CheckApi served in-process on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from streams.models.signal import validate_signal
from streams.policy import PolicyEngine
from streams.processing.check import Limits, LiveChecker
from streams.state.risk import RiskModel
from streams.state.subject import apply_signal, new_signal_state
from streams.web.check_api import CheckApi

ROOT = Path(__file__).resolve().parents[2]
ENGINE = PolicyEngine.from_directory(ROOT / "policies")
RISK = RiskModel.from_file(ROOT / "risk" / "model.yaml")


def signal(subject: str, kind: str, attributes: dict[str, Any], n: int = 1) -> dict[str, Any]:
    stype, sid = subject.split(":", 1)
    return {
        "event_id": f"e-{subject}-{kind}-{n}",
        "subject": {"type": stype, "id": sid},
        "source": "test",
        "event_time": f"2026-11-30T10:00:{n:02d}Z",
        "type": kind,
        "attributes": attributes,
    }


def state_bytes(*signals: dict[str, Any]) -> bytes:
    """The stored signal state after these signals, as the pipeline writes it."""
    state = new_signal_state()
    for raw in signals:
        apply_signal(state, validate_signal(raw))
    return orjson.dumps(state)


def request(
    principal_id: str = "alice",
    actions: tuple[str, ...] = ("read",),
    attr: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "principal": {"id": principal_id, "roles": ["employee"], "attr": attr or {}},
        "resources": [{"resource": {"kind": "document", "id": "d1"}, "actions": list(actions)}],
        **extra,
    }


def checker(states: dict[bytes, bytes], limits: Limits | None = None) -> LiveChecker:
    """A checker whose signal state is ``states`` (subject key -> stored bytes)."""
    return LiveChecker(lambda: ENGINE, RISK, states.get, limits or Limits())


@asynccontextmanager
async def served(api: CheckApi, ssl_context: Any = None) -> AsyncIterator[str]:
    """``api`` on 127.0.0.1:<free port>; yields its base URL."""
    await api.start("127.0.0.1", 0, ssl_context)
    try:
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{api.port}"
    finally:
        await api.stop()
