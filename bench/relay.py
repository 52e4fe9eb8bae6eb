"""The latency floor: a minimal aiokafka relay, group consumer → producer, in its own process.

``python -m bench.relay BROKER GROUP OUTPUT INPUT...``: joins ``GROUP`` on the input topics with
the worker's consumer settings (``RunnerConfig.consumer_tuning``: ``fetch_max_wait_ms`` 10, session
timeout 6 s, heartbeat 1 s), parses each record's JSON and produces ``{"cause": {"event_id":
...}}`` to ``OUTPUT`` with the worker's producer settings (``RunnerConfig.producer_tuning``: acks
all, no linger), one ``getmany`` batch at a time, waiting for
the acknowledgements before the next fetch (as the worker does). Prints ``ready`` once it owns
partitions. What Vigil adds on top of this is its own latency.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from streams.kafka.security import PLAINTEXT
from streams.processing.runner import RunnerConfig


class _Ready(ConsumerRebalanceListener):  # type: ignore[misc]
    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            print("ready", flush=True)


def client_kwargs(broker: str, group: str, inputs: list[str]) -> tuple[dict[str, Any], ...]:
    """Consumer and producer settings: the worker's (``RunnerConfig`` defaults), plaintext."""
    worker = RunnerConfig(
        bootstrap=broker, group_id=group, input_topics=inputs, changelog_topic="", data_dir=None
    )
    common = {"bootstrap_servers": broker}  # security: plaintext, the embedded broker (below)
    consumer = {
        **common,
        "group_id": group,
        "auto_offset_reset": "latest",
        **worker.consumer_tuning(),
    }
    return consumer, {**common, **worker.producer_tuning()}


async def relay(broker: str, group: str, output: str, inputs: list[str]) -> None:
    consumer_kwargs, producer_kwargs = client_kwargs(broker, group, inputs)
    consumer = AIOKafkaConsumer(**consumer_kwargs, **PLAINTEXT.client_kwargs())
    producer = AIOKafkaProducer(**producer_kwargs, **PLAINTEXT.client_kwargs())
    await producer.start()
    consumer.subscribe(inputs, listener=_Ready())
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            data = await consumer.getmany(timeout_ms=100, max_records=2000)
            futures = []
            for tp, messages in data.items():
                for m in messages:
                    eid = orjson.loads(m.value)["event_id"]
                    value = orjson.dumps({"cause": {"event_id": eid}})
                    futures.append(
                        await producer.send(output, value, key=m.key, partition=tp.partition)
                    )
            if futures:
                await asyncio.gather(*futures)
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    broker, group, output, *inputs = sys.argv[1:]
    asyncio.run(relay(broker, group, output, inputs))


if __name__ == "__main__":
    main()
