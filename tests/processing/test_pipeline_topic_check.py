"""A signal type on a topic that does not carry it is dead-lettered with the reason (the mapping
lives in ``streams.models.signal.SIGNAL_TOPIC_ROLE``); on its own topic it is applied."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.codecs import decode_any
from streams.models.signal import SIGNAL_TOPIC_ROLE, SIGNAL_TOPIC_ROLES, SIGNAL_TYPES
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.records import InRecord
from streams.settings import Settings
from streams.state.store import MemoryStore
from tests.processing.support import NOW, project_pipeline

SETTINGS = Settings(_env_file=None)  # default topic names
TOPICS = Topics(
    signals=frozenset(SETTINGS.signal_topics),
    grants=SETTINGS.topic_grants,
    decisions=SETTINGS.topic_decisions,
    revocations=SETTINGS.topic_revocations,
    deadletter=SETTINGS.topic_deadletter,
    signal_roles=SETTINGS.signal_topic_roles,
)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return project_pipeline(TOPICS, output_format="json")


def device_signal() -> dict[str, Any]:
    return {
        "event_id": "e1",
        "type": "device-compliance-change",
        "subject": {"type": "user", "id": "alice"},
        "source": "mdm",
        "event_time": "2026-11-29T10:30:00Z",
        "attributes": {"device_id": "D1", "current_status": "compliant"},
    }


def run(pipeline: Pipeline, topic: str) -> list[dict[str, Any]]:
    rec = InRecord(topic, 0, 1, b"user:alice", orjson.dumps(device_signal()), [], NOW)
    result = pipeline.process([rec], MemoryStore(), NOW)
    return [
        decode_any(o.value, o.headers)[1] for o in result.outputs if o.topic == TOPICS.deadletter
    ]


def test_every_signal_type_has_exactly_one_topic() -> None:
    assert set(SIGNAL_TOPIC_ROLE) == SIGNAL_TYPES
    assert set(SIGNAL_TOPIC_ROLE.values()) == set(SIGNAL_TOPIC_ROLES)


def test_device_signal_on_the_identity_topic_is_dead_lettered(pipeline: Pipeline) -> None:
    [dead] = run(pipeline, "signals.identity")
    assert dead["error"] == "validation"
    assert dead["reason"].startswith(
        "signal type 'device-compliance-change' belongs on the device topic; signals.identity "
        "carries identity signals only"
    )


def test_device_signal_on_the_device_topic_is_applied(pipeline: Pipeline) -> None:
    assert run(pipeline, "signals.device") == []


def test_one_topic_for_every_role_accepts_every_type() -> None:
    shared = Settings(
        _env_file=None,
        topic_identity="signals",
        topic_device="signals",
        topic_network="signals",
        topic_risk="signals",
    )
    assert shared.signal_topic_roles == {"signals": frozenset(SIGNAL_TOPIC_ROLES)}
