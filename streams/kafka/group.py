"""Consumer-group helpers shared by the revocation consumers (webhooks, the PEP's listener)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def commit_start(consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
    """Fix where a new group starts: for each assigned partition without a committed offset,
    resolve its position (``auto_offset_reset``) and commit it at once. Otherwise a rebalance
    before the first commit would resolve "latest" again on the next member and skip what
    was produced in between. Call it from ``on_partitions_assigned``."""
    for tp in assigned:
        position = await consumer.position(tp)
        if await consumer.committed(tp) is None:
            await consumer.commit({tp: position})
