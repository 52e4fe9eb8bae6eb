"""Backoff and degraded state of streams.processing.outage (the runner's outage bookkeeping)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY

from streams.codecs import OutputEncoder, RegistryError, TransientError
from streams.policy import PolicyEngine
from streams.processing.outage import Outages, dependency_of
from streams.processing.pipeline import Pipeline
from streams.processing.records import InRecord
from streams.state.risk import RiskModel
from streams.state.store import MemoryStore
from tests.schema_registry import FakeRegistry


def gauge(reason: str) -> float | None:
    return REGISTRY.get_sample_value("vigil_degraded", {"reason": reason})


def test_backoff_doubles_up_to_the_cap() -> None:
    outages = Outages(first_delay_s=0.5, max_delay_s=30.0)
    delays = [outages.failed(RegistryError("GET /schemas/ids/1: refused")) for _ in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_each_dependency_has_its_own_reason_until_a_batch_goes_through() -> None:
    outages = Outages()
    assert not outages.degraded and outages.reasons() == []
    outages.failed(RegistryError("GET /schemas/ids/7: HTTP 503 busy", 503))
    outages.failed(KafkaTimeoutError())
    reasons = outages.reasons()
    assert outages.degraded and len(reasons) == 2
    assert reasons[0].startswith("broker unavailable since ")
    assert reasons[1].startswith("schema registry unavailable since ")
    assert "HTTP 503 busy" in reasons[1] and "1 retries" in reasons[1]
    assert gauge("schema_registry") == 1 and gauge("broker") == 1
    outages.recovered()
    assert not outages.degraded and outages.reasons() == []
    assert gauge("schema_registry") == 0 and gauge("broker") == 0
    # a new outage starts again from the first delay
    assert outages.failed(KafkaTimeoutError()) == outages.first_delay_s


def test_dependency_names_are_bounded() -> None:
    assert dependency_of(RegistryError("x")) == "schema_registry"
    assert dependency_of(KafkaTimeoutError()) == "broker"


def test_probe_reports_an_unreachable_broker_until_a_probe_succeeds() -> None:
    outages = Outages()
    outages.probe_failed("broker", KafkaTimeoutError())
    assert outages.degraded and gauge("broker") == 1
    assert outages.reasons()[0].startswith("broker unreachable since ")
    outages.recovered()  # a batch without the broker (none) does not clear a probe's finding
    assert outages.degraded
    outages.failed(KafkaTimeoutError())  # a failing batch: one reason, the batch's
    assert len(outages.reasons()) == 1 and "retries" in outages.reasons()[0]
    outages.probe_succeeded("broker")
    assert outages.degraded and gauge("broker") == 1  # the batch still fails
    outages.recovered()
    assert not outages.degraded and gauge("broker") == 0


def test_a_registry_outage_is_raised_by_the_pipeline_not_dead_lettered() -> None:
    """A framed record whose schema the registry must supply: while the registry is down the
    batch raises TransientError (the runner retries it) instead of dead-lettering the record,
    whatever per-record isolation the pipeline has; once it is back the record applies. (JSON
    outputs, so that only the decoding needs the registry.)"""
    from tests.pipeline.test_pipeline_outage import grant_event
    from tests.processing.test_pipeline_batches import NOW, ROOT, TOPICS

    registry = FakeRegistry()
    with registry.serving():
        framed = OutputEncoder("GrantEvent", registry_url=registry.url, topic="t").encode(
            grant_event("g-framed", "alice")
        )
    pipeline = Pipeline(
        TOPICS,
        PolicyEngine.from_directory(ROOT / "policies"),
        RiskModel.from_file(ROOT / "risk" / "model.yaml"),
        output_format="json",
        registry_url=registry.url,
    )
    record = InRecord("authz.grants", 0, 1, b"user:alice", framed, [], NOW)
    with pytest.raises(TransientError):
        pipeline.process([record], MemoryStore(), NOW)
    with registry.serving():
        result = pipeline.process([record], MemoryStore(), NOW)
    assert [out.topic for out in result.outputs] == [TOPICS.decisions]
