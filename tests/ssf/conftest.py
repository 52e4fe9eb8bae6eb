"""Real workers for the Shared Signals tests (the fixture of tests/pipeline)."""

from __future__ import annotations

from tests.pipeline.conftest import start_worker

__all__ = ["start_worker"]
