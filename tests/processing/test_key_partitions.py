"""Records for another subject's partition (the subscriptions topic) go where Kafka's default
partitioner puts their key; the runner remembers each key's partition instead of hashing it
again (``KeyPartitions``), with exactly the same result."""

from __future__ import annotations

import pytest

from streams.processing import runner
from streams.processing.runner import KeyPartitions
from streams.state.replica import partition_of

# murmur2 of these keys as the Java client computes it (org.apache.kafka.common.utils.Utils,
# the values Akka's Murmur2Spec checks against it)
JAVA_MURMUR2 = {
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize("count", [1, 3, 4, 12])
def test_the_partition_is_kafkas_default_partition(count: int) -> None:
    parts = KeyPartitions()
    for key, hashed in JAVA_MURMUR2.items():
        expected = (hashed & 0x7FFFFFFF) % count
        assert partition_of(key, count) == expected
        assert parts.of(key, count) == expected
        assert parts.of(key, count) == expected  # remembered


def test_each_key_is_hashed_once_and_the_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashed: list[bytes] = []

    def counting(key: bytes, count: int) -> int:
        hashed.append(key)
        return partition_of(key, count)

    monkeypatch.setattr(runner, "partition_of", counting)
    parts = KeyPartitions(kept=100)
    keys = [f"device:D-u{i:07d}".encode() for i in range(250)]
    for _ in range(3):
        for key in keys[:50]:
            assert parts.of(key, 4) == partition_of(key, 4)
    assert hashed == keys[:50]  # once per key
    for key in keys:  # more keys than kept: forgotten, still right
        assert parts.of(key, 4) == partition_of(key, 4)
        assert parts.of(key, 6) == partition_of(key, 6)  # another partition count
    assert max(len(known) for known in parts._known.values()) <= 100
