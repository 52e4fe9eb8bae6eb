"""``bench.fetch_floor`` (the broker floor of docs/performance.md, goal 2) runs end to end on
tiny settings: batches are stored, every offered record is acknowledged and read back, and each
stage reports its percentiles. No timing thresholds: figures are not judged."""

from __future__ import annotations

import uuid

from bench import fetch_floor
from streams.kafka.admin import ensure_topics


async def test_fetch_floor_stages_run_end_to_end(broker: str, monkeypatch) -> None:
    topic = f"t.floor.{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(fetch_floor, "TOPIC", topic)
    await ensure_topics(broker, [topic], 2)
    results = await fetch_floor.run_stages(broker, [0, 20], rate=40, seconds=0.5, partitions=2)
    assert [r["stored_batches_per_partition"] for r in results] == [0, 20]
    for r in results:
        assert r["sent"] > 0
        assert r["received"] == r["sent"]
        assert r["send_to_receive"]["p50_ms"] > 0
        assert r["fetch_round_trip"]
