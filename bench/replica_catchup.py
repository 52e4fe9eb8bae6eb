"""CPU and memory of the check API's signal replica catching up on a large changelog, in process.

``.venv/bin/python -m bench.replica_catchup [--subjects 1000000] [--granted 100000]``

Feeds the replica's record handler the records of a changelog like bench part (h)'s — one
≈470-byte signal state per subject, plus a ≈3.6 kB grant state for ``--granted`` of them, over 4
partitions — in steps of 1,000 records (``read_to_end``'s fetch size), exactly as the follower
does after each fetch, and reports the CPU seconds of those steps on the event loop's thread,
those of RocksDB's background threads (flushes, compactions) and the VmRSS growth. The Kafka side (fetch, record parse) is left out: it is
the same whatever the replica keeps its data in. ``--dict`` runs the former replica instead: a
Python dict of every subject's value, applied record by record.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streams.state.replica import SignalReplica
from streams.state.store import SIGNAL_PREFIX

STEP = 1000
PARTITIONS = 4


class Record:
    __slots__ = ("key", "offset", "partition", "timestamp", "value")

    def __init__(self, key: bytes, value: bytes, partition: int, offset: int) -> None:
        self.key, self.value, self.partition, self.offset = key, value, partition, offset
        self.timestamp = 1_764_547_200_000 + offset


def _signal(i: int) -> bytes:
    dims = ",".join(
        f'"{d}":[{1_764_547_200_000 + i},"{d}-value-{i % 97}"]'
        for d in ("risk", "account", "credential", "assurance", "network", "sessions")
    )
    recent = ",".join(f'"evt-{i}-{n:04d}"' for n in range(8))
    return f'{{"dims":{{{dims}}},"recent":[{recent}]}}'.encode()[:470].ljust(470, b" ")


def _grant(i: int) -> bytes:
    grants = ",".join(
        f'"g-{i}-{n}":{{"resource":{{"kind":"document","id":"d{n}"}},"actions":["read","edit"],'
        f'"issued_at":{1_764_547_200_000 + n},"session_id":"s-{i}-{n}","device_id":"D{i % 50}",'
        f'"expires_at":{1_764_550_800_000 + n},"roles":["employee"],"attr":{{"team":"t{n}"}}}}'
        for n in range(10)
    )
    return f'{{"grants":{{{grants}}}}}'.encode()


def steps(subjects: int, granted: int) -> Iterator[list[Record]]:
    offsets = [0] * PARTITIONS
    step: list[Record] = []
    for i in range(subjects + granted):
        subject = f"user:bench-{i}".encode()
        p = i % PARTITIONS
        step.append(Record(SIGNAL_PREFIX + subject, _signal(i), p, offsets[p]))
        offsets[p] += 1
        if i < granted:
            step.append(Record(b"g:" + subject, _grant(i), p, offsets[p]))
            offsets[p] += 1
        if len(step) >= STEP:
            yield step
            step = []
    if step:
        yield step


def vm_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--granted", type=int, default=100_000)
    parser.add_argument("--dict", action="store_true", help="the former in-heap dict replica")
    args = parser.parse_args()
    states: dict[bytes, bytes] = {}
    replica: Any = None
    workdir = Path()
    if not args.dict:
        workdir = Path(tempfile.mkdtemp(prefix="vigil-replica-bench-"))
        replica = SignalReplica(bootstrap="unused:9092", topic="bench", path=workdir / "replica")
        replica.open()
    gc.collect()
    rss_before = vm_rss()
    other_threads = time.process_time() - time.thread_time()
    cpu = 0.0
    records = 0
    for step in steps(args.subjects, args.granted):
        began = time.thread_time()
        if args.dict:  # what the former replica did per record
            for record in step:
                key = record.key
                if key is None or not key.startswith(SIGNAL_PREFIX):
                    continue
                states[key[len(SIGNAL_PREFIX) :]] = record.value
        else:
            for record in step:
                replica._apply(record)
            replica._flush()
        cpu += time.thread_time() - began
        records += len(step)
    gc.collect()
    background = time.process_time() - time.thread_time() - other_threads
    held = len(states) if args.dict else len(replica)
    print(
        f"{'dict' if args.dict else 'rocksdb'}: {records:,} records, {held:,} subjects, "
        f"CPU {cpu:.2f} s on the loop's thread ({cpu / records * 1e6:.2f} µs/record) "
        f"+ {background:.2f} s in RocksDB's background threads, "
        f"VmRSS +{(vm_rss() - rss_before) / 2**20:,.0f} MiB"
    )
    if replica is not None:
        replica.store.close()
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
