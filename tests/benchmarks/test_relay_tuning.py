"""The relay floor of part (c) (bench/relay.py) runs with the worker's client settings: a floor
measured with other fetch or producer settings would not be the floor of the worker's path."""

from __future__ import annotations

from bench import relay
from streams.processing.runner import RunnerConfig


def test_relay_clients_use_the_worker_tuning() -> None:
    consumer, producer = relay.client_kwargs("127.0.0.1:9092", "g", ["in"])
    worker = RunnerConfig(
        bootstrap="127.0.0.1:9092",
        group_id="g",
        input_topics=["in"],
        changelog_topic="c",
        data_dir=None,
    )
    assert worker.consumer_tuning().items() <= consumer.items()
    assert worker.producer_tuning().items() <= producer.items()
    assert consumer["group_id"] == "g"
