"""The pipeline most broker-free tests run: the project's policies and risk model."""

from __future__ import annotations

import pytest

from streams.processing.pipeline import Pipeline
from tests.processing.support import project_pipeline


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return project_pipeline()
