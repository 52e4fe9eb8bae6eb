"""``vigil_consumer_lag_records{topic,partition}`` for the input partitions a worker owns.

Read from the high watermark of the fetch responses (``streams.kafka.lag.fetch_lag``), never
from ListOffsets, which Tansu answers one record batch short (``streams.kafka.quirks``).
Updated after every poll: a dict walk over the owned partitions, no broker round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams import metrics
from streams.kafka.lag import fetch_lag


class LagGauges:
    """One gauge child per owned input partition; removed when the partition leaves."""

    def __init__(self) -> None:
        self._children: dict[TopicPartition, Any] = {}

    def update(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            lag = fetch_lag(consumer, tp)
            if lag is None:
                continue
            child = self._children.get(tp)
            if child is None:
                child = self._children[tp] = metrics.CONSUMER_LAG.labels(
                    tp.topic, str(tp.partition)
                )
            child.set(lag)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            if self._children.pop(tp, None) is not None:
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
