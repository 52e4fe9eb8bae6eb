"""tests/deploy runs real workers too (the live Prometheus test)."""

from tests.pipeline.conftest import start_worker

__all__ = ["start_worker"]
