"""``streams.state.counting``: a count started at a snapshot is the snapshot's count, whatever is
written to the live store while it runs (keys created, deleted or changed before and after the
count passes them), with keys read from the live store and the snapshot read only for keys
written since. Real RocksDB and the in-memory store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from streams.state import counting
from streams.state.counting import StateCount
from streams.state.store import (
    GRANT_PREFIX,
    SIGNAL_PREFIX,
    MemoryStore,
    PartitionStore,
    RocksStore,
)


def grant_state(n: int) -> bytes:
    return orjson.dumps({"grants": {f"g{i}": {"grant_id": f"g{i}"} for i in range(n)}})


def seed(store: PartitionStore) -> None:
    """20 subjects with signal state (s:u00..u19), 10 with grant states of 1..10 grants."""
    store.write({SIGNAL_PREFIX + b"u%02d" % i: b"{}" for i in range(20)})
    store.write({GRANT_PREFIX + b"u%02d" % i: grant_state(i + 1) for i in range(10)})


SNAPSHOT_SUBJECTS = 20
SNAPSHOT_GRANTS = sum(range(1, 11))


def later_writes(store: PartitionStore) -> None:
    """Writes after the snapshot, on both sides of a count that is part-way through."""
    store.write(
        {
            SIGNAL_PREFIX + b"u00": None,  # deleted, already counted
            SIGNAL_PREFIX + b"u15": None,  # deleted, not counted yet
            SIGNAL_PREFIX + b"u16": b'{"new": 1}',  # changed
            SIGNAL_PREFIX + b"u005": b"{}",  # created behind the count
            SIGNAL_PREFIX + b"u99": b"{}",  # created ahead of it
            GRANT_PREFIX + b"u03": grant_state(50),  # changed: counts as it was (4)
            GRANT_PREFIX + b"u04": None,  # deleted: counts as it was (5)
            GRANT_PREFIX + b"u98": grant_state(7),  # created: not counted
        }
    )


@pytest.fixture(params=["memory", "rocksdb"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], PartitionStore]:
    stores: list[PartitionStore] = []

    def make() -> PartitionStore:
        store: PartitionStore = (
            MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "p0")
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def run(count: StateCount) -> int:
    steps = 1
    while not count.step():
        steps += 1
    return steps


def test_count_is_the_snapshot_count_whatever_is_written_meanwhile(
    new_store: Callable[[], PartitionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(counting, "KEYS_PER_STEP", 4)
    store = new_store()
    seed(store)
    count = StateCount(store, store.snapshot())
    assert not count.step() and not count.step()  # 8 of 20 signal keys passed (u00..u07)
    later_writes(store)
    run(count)
    assert (count.subjects, count.grants) == (SNAPSHOT_SUBJECTS, SNAPSHOT_GRANTS)


def test_writes_during_the_grant_part_count_as_they_were(
    new_store: Callable[[], PartitionStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(counting, "KEYS_PER_STEP", 4)
    store = new_store()
    seed(store)
    count = StateCount(store, store.snapshot())
    while count._prefix == SIGNAL_PREFIX:  # the signal keys, then one grant chunk
        count.step()
    count.step()
    store.write(
        {
            GRANT_PREFIX + b"u01": None,  # behind the count
            GRANT_PREFIX + b"u06": grant_state(1),  # ahead: counts as it was (7)
            GRANT_PREFIX + b"u09": None,  # ahead: counts as it was (10)
            SIGNAL_PREFIX + b"u50": b"{}",  # a subject part already counted: ignored
        }
    )
    run(count)
    assert (count.subjects, count.grants) == (SNAPSHOT_SUBJECTS, SNAPSHOT_GRANTS)


def test_a_finished_count_stops_watching_the_store(
    new_store: Callable[[], PartitionStore],
) -> None:
    store = new_store()
    seed(store)
    count = StateCount(store, store.snapshot())
    assert store.on_write is not None
    assert run(count) == 2  # one chunk of signal keys, one of grant states
    assert store.on_write is None and count.view is None
    assert (count.subjects, count.grants) == (SNAPSHOT_SUBJECTS, SNAPSHOT_GRANTS)
