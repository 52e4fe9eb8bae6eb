"""Partition-local key/value stores for subject state: RocksDB (rocksdict) and in-memory.

One store per input partition number, so a partition's state moves as a unit on rebalance and
is rebuilt from the same-numbered changelog partition. A batch's state changes, input offsets and
changelog offset are written in one atomic write, so they never disagree after a crash. A value of
None in a write deletes the key (the changelog carries it as a tombstone, a null value, which a
compacted topic drops), so state that ends leaves no key behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    Snapshot,
    WriteBatch,
)

SIGNAL_PREFIX = b"s:"  # subject key -> signal state (dimensions, recent event ids)
GRANT_PREFIX = b"g:"  # subject key -> grant state (active grants, revocation tombstones)
OFFSET_PREFIX = b"m:offset:"
CHANGELOG_OFFSET = b"m:changelog"


def signal_key(subject_key: bytes) -> bytes:
    return SIGNAL_PREFIX + subject_key


def grant_key(subject_key: bytes) -> bytes:
    return GRANT_PREFIX + subject_key


def offset_key(topic: str) -> bytes:
    return OFFSET_PREFIX + topic.encode()


class StoreView(Protocol):
    """A frozen view of a store (a RocksDB snapshot): later writes do not change its reads."""

    def get(self, key: bytes) -> bytes | None: ...


#: Called after every ``write`` with its puts (``PartitionStore.on_write``; e.g. a running count).
WriteHook = Callable[[Mapping[bytes, bytes | None]], None]


class PartitionStore(Protocol):
    on_write: WriteHook | None

    def snapshot(self) -> StoreView: ...
    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...
    def get(self, key: bytes) -> bytes | None: ...
    def write(self, puts: Mapping[bytes, bytes | None]) -> None: ...
    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...
    def keys_after(self, prefix: bytes, after: bytes | None, limit: int) -> list[bytes]: ...
    def items_after(
        self, prefix: bytes, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]: ...
    def close(self) -> None: ...


class MemoryStore:
    """The same contract in a dict: unit tests and ``--data-dir :memory:``."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self.on_write: WriteHook | None = None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [self._data.get(k) for k in keys]

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, puts: Mapping[bytes, bytes | None]) -> None:
        for key, value in puts.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
        if self.on_write is not None:
            self.on_write(puts)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self._data):
            if key.startswith(prefix):
                yield key, self._data[key]

    def keys_after(self, prefix: bytes, after: bytes | None, limit: int) -> list[bytes]:
        keys = sorted(
            k for k in self._data if k.startswith(prefix) and (after is None or k > after)
        )
        return keys[:limit]

    def items_after(
        self, prefix: bytes, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        return [(k, self._data[k]) for k in self.keys_after(prefix, after, limit)]

    def snapshot(self) -> StoreView:
        frozen = MemoryStore()
        frozen._data = dict(self._data)
        return frozen

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class RocksMemory:
    """A bound on one store's RocksDB memory: at most ``write_buffers`` memtables of
    ``write_buffer_bytes`` each, and one block cache of ``block_cache_bytes`` that also holds the
    index and bloom-filter blocks (so they are inside the bound, not beside it). Without one a
    store runs on RocksDB's defaults (two 64 MiB memtables). Values are LZ4-compressed on disk."""

    write_buffer_bytes: int
    write_buffers: int
    block_cache_bytes: int

    def apply(self, options: Options) -> None:
        options.set_write_buffer_size(self.write_buffer_bytes)
        options.set_max_write_buffer_number(self.write_buffers)
        options.set_compression_type(DBCompressionType.lz4())
        table = BlockBasedOptions()
        table.set_block_cache(Cache(self.block_cache_bytes))
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)  # a missing key (a new subject) costs no block read
        options.set_block_based_table_factory(table)


class RocksStore:
    """RocksDB in raw-bytes mode; ``write`` is one atomic WriteBatch."""

    def __init__(self, path: Path, memory: RocksMemory | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.increase_parallelism(2)
        if memory is not None:
            memory.apply(options)
        self._db = Rdict(str(path), options)
        self.on_write: WriteHook | None = None

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        return cast(list[bytes | None], self._db.get(list(keys)))

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def write(self, puts: Mapping[bytes, bytes | None]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in puts.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch)
        if self.on_write is not None:
            self.on_write(puts)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if not key.startswith(prefix):
                break
            yield key, value

    def keys_after(self, prefix: bytes, after: bytes | None, limit: int) -> list[bytes]:
        """Up to ``limit`` keys with ``prefix`` sorted after ``after``: a resumable scan that
        never holds an iterator across writes."""
        out: list[bytes] = []
        start = prefix if after is None else after + b"\x00"
        for key in self._db.keys(from_key=start):
            assert isinstance(key, bytes)
            if not key.startswith(prefix) or len(out) >= limit:
                break
            out.append(key)
        return out

    def items_after(
        self, prefix: bytes, after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        """``keys_after`` with the values, read by one iterator (no point read per key)."""
        out: list[tuple[bytes, bytes]] = []
        start = prefix if after is None else after + b"\x00"
        for key, value in self._db.items(from_key=start):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if not key.startswith(prefix) or len(out) >= limit:
                break
            out.append((key, value))
        return out

    def snapshot(self) -> StoreView:
        """Reads as of now; release it (drop every reference) before ``close``."""
        return RocksView(self._db.snapshot())

    def close(self) -> None:
        self._db.close()


class RocksView:
    """``StoreView`` of a RocksDB snapshot. Point reads only: rocksdict 0.3's snapshot iterators
    (``keys``, ``items``, ``iter``) read the live database, not the snapshot (measured)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def get(self, key: bytes) -> bytes | None:
        try:
            value = self._snapshot[key]
        except Exception as exc:  # rocksdict raises a bare Exception("key not found")
            if str(exc) == "key not found":
                return None
            raise
        assert isinstance(value, bytes)  # raw mode
        return value


def count_keys(store: PartitionStore, prefix: bytes, chunk: int = 10_000) -> int:
    """How many keys start with ``prefix`` (keys only, in chunks: e.g. subjects at restore)."""
    count = 0
    after: bytes | None = None
    while True:
        keys = store.keys_after(prefix, after, chunk)
        count += len(keys)
        if len(keys) < chunk:
            return count
        after = keys[-1]


def open_store(data_dir: Path | None, name: str) -> PartitionStore:
    """A RocksDB store under ``data_dir/name``, or an in-memory one when ``data_dir`` is None."""
    if data_dir is None:
        return MemoryStore()
    return RocksStore(data_dir / name)
