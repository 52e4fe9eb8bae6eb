"""Fetch lag as the consumer itself sees it, without a broker round trip.

The runner's merge (``streams.processing.merge``) must know whether an input partition with
nothing buffered still has records on the broker. ListOffsets cannot tell on Tansu (it stops one
record batch short, see ``streams.kafka.quirks``); the high watermark carried by every fetch
response is exact on Tansu and on Kafka, and aiokafka keeps it per partition.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


def has_unfetched(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    """True while ``tp`` may hold records the consumer has not handed out yet: it is not assigned
    (yet: a join before the metadata knew every input topic assigns only some of them), no fetch
    response has told its high watermark, or the consumer's position is still below it.

    Reads aiokafka's per-partition fetch state (``_subscription``, private; aiokafka is pinned
    below 0.15) because the public ``position()`` may wait for an offset reset, and the caller
    must not wait.
    """
    subscription = consumer._subscription
    if not subscription.is_assigned(tp):
        return True
    state = subscription.subscription.assignment.state_value(tp)
    if state is None or state.highwater is None or not state.has_valid_position:
        return True
    return bool(state.position < state.highwater)


def fetch_lag(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Records of ``tp`` not fetched yet: the last fetch response's high watermark minus the
    consumer position; None until a fetch has told the high watermark (same private state as
    ``has_unfetched``)."""
    subscription = consumer._subscription
    if not subscription.is_assigned(tp):
        return None
    state = subscription.subscription.assignment.state_value(tp)
    if state is None or state.highwater is None or not state.has_valid_position:
        return None
    return max(0, int(state.highwater) - int(state.position))


def fetch_state(consumer: AIOKafkaConsumer, tp: TopicPartition) -> tuple[int | None, int | None]:
    """(position, fetch high watermark) of ``tp`` as the consumer knows them, None where unknown
    (diagnostics: the fetch trace)."""
    subscription = consumer._subscription
    if not subscription.is_assigned(tp):
        return None, None
    state = subscription.subscription.assignment.state_value(tp)
    if state is None:
        return None, None
    position = state.position if state.has_valid_position else None
    return position, state.highwater
