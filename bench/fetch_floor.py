"""How a broker's produce → consume latency depends on what its partitions already hold.

``python -m bench.fetch_floor [--broker tansu|mock] [--stages 0,2000,8000] [--rate 500]``:
on a fresh broker (Tansu, memory storage, or librdkafka's mock cluster from the
``confluent-kafka`` wheel), for each stage first fill every partition of topic ``in`` with
more one-record batches (``--fill-batch`` records each) up to the stage's count, then offer
``--rate`` records/s for ``--seconds`` (10 ms ticks, linger 2 ms, as ``bench.loadgen``) to the
same topic while an assigned consumer (``fetch_max_wait_ms`` 10, as the worker) reads it.
Printed per stage: send → acknowledged, acknowledged → received, send → received
(p50/p90/p99/max, ms), the consumer's fetch round trips and the broker's CPU share.

No Vigil code in the path: this is the floor under part (c) and how it moves with stored
batches (docs/performance.md, goal 2).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.latency import cpu_seconds, percentiles
from streams.kafka.admin import ensure_topics
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.quirks import end_offsets
from streams.kafka.security import PLAINTEXT

TOPIC = "in"
FETCH_WAIT_MS = 10  # the worker's (streams.processing.runner.RunnerConfig)


async def fill(bootstrap: str, batches: int, per_batch: int, partitions: int) -> None:
    """``batches`` more batches of ``per_batch`` records in every partition of ``TOPIC``."""
    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=0, **PLAINTEXT.client_kwargs()
    )
    await prod.start()
    try:
        futures: list[Any] = []
        for _ in range(batches):
            for p in range(partitions):
                batch = prod.create_batch()
                for _ in range(per_batch):
                    batch.append(key=b"k", value=b"x" * 200, timestamp=None)
                futures.append(await prod.send_batch(batch, TOPIC, partition=p))
            if len(futures) > 256:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await prod.stop()


async def measure(
    bootstrap: str, rate: int, seconds: float, partitions: int, broker_pid: int | None
) -> dict[str, Any]:
    """Offer ``rate`` records/s; per record: send, acknowledgement and receive times."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_WAIT_MS,
        max_partition_fetch_bytes=4 * 1024 * 1024,  # the worker's
        **PLAINTEXT.client_kwargs(),
    )
    await consumer.start()
    tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
    consumer.assign(tps)
    for tp, end in (await end_offsets(consumer, tps)).items():  # not Tansu's short ListOffsets
        consumer.seek(tp, end)
    round_trips = _time_fetches(consumer)
    received: dict[bytes, float] = {}

    async def consume() -> None:
        while True:
            data = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for messages in data.values():
                for m in messages:
                    received[m.value[:16]] = now

    reader = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=2, **PLAINTEXT.client_kwargs()
    )
    await prod.start()
    sent: dict[bytes, float] = {}
    acked: dict[bytes, float] = {}
    cpu0 = cpu_seconds(broker_pid) if broker_pid else 0.0
    round_trips.clear()
    started = next_at = time.perf_counter()
    owed, seq = 0.0, 0
    try:
        while time.perf_counter() - started < seconds:
            owed += rate * 0.01
            while owed >= 1:
                owed -= 1
                seq += 1
                eid = f"{seq:016d}".encode()
                sent[eid] = time.time()
                fut = await prod.send(TOPIC, eid + b"y" * 184, key=eid, partition=seq % partitions)
                fut.add_done_callback(lambda _, e=eid: acked.__setitem__(e, time.time()))
            next_at += 0.01
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await prod.flush()
        await asyncio.sleep(1.5)
    finally:
        wall = time.perf_counter() - started
        reader.cancel()
        await prod.stop()
        await consumer.stop()
    both = [e for e in sent if e in acked and e in received]
    return {
        "sent": len(sent),
        "received": sum(1 for e in sent if e in received),
        "send_to_ack": percentiles([acked[e] - sent[e] for e in sent if e in acked]),
        "ack_to_receive": percentiles([received[e] - acked[e] for e in both]),
        "send_to_receive": percentiles([received[e] - sent[e] for e in sent if e in received]),
        "fetch_round_trip": percentiles(round_trips),
        "broker_core_share": round((cpu_seconds(broker_pid) - cpu0) / wall, 3)
        if broker_pid
        else None,
    }


def _time_fetches(consumer: AIOKafkaConsumer) -> list[float]:
    """Round trips of the consumer's fetch requests (aiokafka's private fetch call, as
    ``streams.processing.fetch_trace``)."""
    times: list[float] = []
    fetcher: Any = consumer._fetcher
    original: Callable[..., Any] = fetcher._proc_fetch_request

    async def timed(*args: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(*args)
        finally:
            times.append(time.perf_counter() - began)

    fetcher._proc_fetch_request = timed
    return times


async def run_stages(
    bootstrap: str,
    stages: list[int],
    *,
    rate: int,
    seconds: float,
    fill_batch: int = 1,
    partitions: int = 4,
    broker_pid: int | None = None,
) -> list[dict[str, Any]]:
    """Fill up to each stage's batches per partition, then measure; one result per stage."""
    results, stored = [], 0
    for stage in stages:
        if stage > stored:
            await fill(bootstrap, stage - stored, fill_batch, partitions)
            stored = stage
        result = await measure(bootstrap, rate, seconds, partitions, broker_pid)
        results.append({"stored_batches_per_partition": stored, **result})
    return results


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    stages = [int(s) for s in args.stages.split(",")]
    kwargs = {"rate": args.rate, "seconds": args.seconds, "fill_batch": args.fill_batch}
    if args.broker == "mock":
        from confluent_kafka import Producer

        mock = Producer({"test.mock.num.brokers": 1})  # the cluster lives as long as this client
        broker = next(iter(mock.list_topics(timeout=5).brokers.values()))
        mock.produce(TOPIC, b"create")  # topics auto-create on the mock cluster
        mock.flush(5)
        partitions = len(mock.list_topics(TOPIC, timeout=5).topics[TOPIC].partitions)
        return await run_stages(
            f"{broker.host}:{broker.port}", stages, partitions=partitions, **kwargs
        )
    with EmbeddedBroker() as tansu:
        await ensure_topics(tansu.bootstrap, [TOPIC], 4)
        assert tansu._proc is not None
        return await run_stages(tansu.bootstrap, stages, broker_pid=tansu._proc.pid, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("tansu", "mock"), default="tansu")
    parser.add_argument("--stages", default="0,2000,8000", help="stored batches per partition")
    parser.add_argument("--fill-batch", type=int, default=1, help="records per filled batch")
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for r in asyncio.run(main_async(args)):
        print(
            f"{args.broker}, {r['stored_batches_per_partition']:,} batches/partition stored: "
            f"{r['received']}/{r['sent']} received; send→receive {r['send_to_receive']}; "
            f"send→ack {r['send_to_ack']}; fetch round trip {r['fetch_round_trip']}; "
            f"broker CPU {r['broker_core_share']} core",
            flush=True,
        )


if __name__ == "__main__":
    main()
