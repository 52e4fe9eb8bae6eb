"""``vigil produce`` and ``vigil tail`` as subprocesses against the session's embedded broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_helpers import consume_all, produce_json

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
VIGIL = [sys.executable, "-m", "streams.cli"]


def signal(n: int, user: str = "alice") -> dict[str, Any]:
    return {
        "event_id": f"e-{n}",
        "type": "device-compliance-change",
        "subject": {"type": "user", "id": user},
        "source": "mdm",
        "event_time": 1764410400000 + n,
        "attributes": {"device_id": "D1", "current_status": "not-compliant"},
    }


def grant(n: int) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": f"g-{n}",
        "principal": {"id": "report-bot", "roles": ["agent"], "attr": {}},
        "resource": {"kind": "document", "id": "doc-1", "attr": {}},
        "actions": ["read"],
    }


def env(broker: str) -> dict[str, str]:
    """The environment of a CLI subprocess: broker via VIGIL_BROKER, repo importable."""
    return {**os.environ, "VIGIL_BROKER": broker, "PYTHONPATH": str(ROOT)}


def vigil(
    broker: str, *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIGIL, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env(broker),
        timeout=timeout,
        cwd=ROOT,
    )


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_produce_json_keys_headers_and_bad_line(broker: str, topic_factory) -> None:
    sig_topic, grant_topic = await topic_factory("signals.device", "authz.grants", partitions=2)
    lines = [json.dumps(signal(1)), "this is {not json", "", json.dumps(signal(2, "bob"))]
    result = vigil(broker, "produce", sig_topic, stdin="\n".join(lines) + "\n")
    assert result.returncode == 1, result.stderr
    assert "line 2" in result.stderr
    assert "produced 2 record(s)" in result.stderr
    records = await consume_all(broker, sig_topic, expected=2)
    by_key = {r.key: r for r in records}
    assert set(by_key) == {b"user:alice", b"user:bob"}
    assert by_key[b"user:alice"].value == lines[0].encode()  # sent as-is
    assert ("content-type", b"application/json") in list(by_key[b"user:alice"].headers)

    # principal without type → "user:"; type given → used.
    typed = {**grant(2), "principal": {"id": "rb", "type": "agent"}}
    result = vigil(
        broker, "produce", grant_topic, stdin=json.dumps(grant(1)) + "\n" + json.dumps(typed)
    )
    assert result.returncode == 0, result.stderr
    keys = sorted(r.key for r in await consume_all(broker, grant_topic, expected=2))
    assert keys == [b"agent:rb", b"user:report-bot"]


async def test_produce_refuses_a_line_it_cannot_key(broker: str, topic_factory) -> None:
    """Workers dead-letter unkeyed records, so ``vigil produce`` never sends one."""
    (topic,) = await topic_factory("authz.grants")
    release = json.dumps({"op": "released", "grant_id": "g-1"})  # no principal: no subject
    result = vigil(broker, "produce", topic, stdin=release + "\n" + json.dumps(grant(1)))
    assert result.returncode == 1 and "line 1: no subject key" in result.stderr
    records = await consume_all(broker, topic, expected=1)
    assert [r.key for r in records] == [b"user:report-bot"]


async def test_produce_rejects_non_object_json(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("signals.identity")
    result = vigil(broker, "produce", topic, stdin='[1, 2]\n"text"\n' + json.dumps(signal(1)))
    assert result.returncode == 1
    assert "line 1" in result.stderr and "line 2" in result.stderr
    assert len(await consume_all(broker, topic, expected=1)) == 1


async def test_tail_from_beginning_prints_values_and_stops_at_max(
    broker: str, topic_factory
) -> None:
    (topic,) = await topic_factory("signals.network", partitions=3)
    sent = [signal(n, f"u{n}") for n in range(6)]
    await produce_json(broker, topic, sent)
    result = vigil(broker, "tail", topic, "--from-beginning", "--max", "6", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    got = json_lines(result.stdout)
    assert sorted(g["event_id"] for g in got) == sorted(s["event_id"] for s in sent)

    result = vigil(broker, "tail", topic, "--from-beginning", "--max", "2", "--timeout", "20")
    assert len(json_lines(result.stdout)) == 2


async def test_tail_meta_and_partition(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("signals.risk", partitions=2)
    await produce_json(broker, topic, [signal(1)], partition=1)
    await produce_json(broker, topic, [signal(2)], partition=0)
    result = vigil(
        broker, "tail", topic, "--from-beginning", "--meta", "--partition", "1", "--timeout", "2"
    )
    assert result.returncode == 0, result.stderr
    (line,) = json_lines(result.stdout)
    assert line["topic"] == topic and line["partition"] == 1 and line["offset"] == 0
    assert line["key"] == "user:alice" and line["kind"] == "Signal"
    assert line["value"]["event_id"] == "e-1"
    assert line["headers"] == {"content-type": "application/json"}


async def test_tail_from_end_skips_history_despite_listoffsets_bug(
    broker: str, topic_factory
) -> None:
    """Several batches already in the topic: Tansu's ListOffsets would point into the last one,
    and a tail that trusted it would print that batch's records. Ours prints nothing."""
    (topic,) = await topic_factory("signals.device")
    for batch in range(3):
        await produce_json(broker, topic, [signal(batch * 10 + n) for n in range(10)], partition=0)
    started = time.monotonic()
    result = vigil(broker, "tail", topic, "--timeout", "1.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert time.monotonic() - started >= 1.5


async def test_tail_follows_new_records(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("signals.identity", partitions=2)
    await produce_json(broker, topic, [signal(0)])
    proc = subprocess.Popen(
        [*VIGIL, "tail", topic, "--max", "3", "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(broker),
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        ready = proc.stderr.readline()  # "tailing <topic> ... from the end": positions are set
        assert "from the end" in ready, ready
        await produce_json(broker, topic, [signal(n, f"u{n}") for n in (1, 2, 3)])
        out, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert sorted(v["event_id"] for v in json_lines(out)) == ["e-1", "e-2", "e-3"]


async def test_produce_avro_then_tail_decodes(broker: str, topic_factory) -> None:
    sig_topic, grant_topic = await topic_factory("signals.device", "authz.grants")
    result = vigil(broker, "produce", sig_topic, "--format", "avro", stdin=json.dumps(signal(7)))
    assert result.returncode == 0, result.stderr
    (record,) = await consume_all(broker, sig_topic, expected=1)
    assert not record.value.startswith(b"{")  # really Avro
    assert record.key == b"user:alice"
    result = vigil(broker, "tail", sig_topic, "--from-beginning", "--max", "1", "--timeout", "20")
    (value,) = json_lines(result.stdout)
    assert value["event_id"] == "e-7" and value["subject"] == {"type": "user", "id": "alice"}

    typed = {**grant(1), "principal": {**grant(1)["principal"], "type": "agent"}}
    result = vigil(broker, "produce", grant_topic, "--format", "avro", stdin=json.dumps(typed))
    assert result.returncode == 0, result.stderr
    result = vigil(broker, "tail", grant_topic, "--from-beginning", "--max", "1", "--timeout", "20")
    (value,) = json_lines(result.stdout)
    assert value["grant_id"] == "g-1" and value["principal"]["id"] == "report-bot"

    # A record the Signal schema cannot hold: reported with its line number, exit 1.
    bad = {"event_id": "e-x", "subject": "nope"}
    result = vigil(broker, "produce", sig_topic, "--format", "avro", stdin=json.dumps(bad))
    assert result.returncode == 1 and "line 1" in result.stderr


async def test_tail_reports_undecodable_records(broker: str, topic_factory) -> None:
    (topic,) = await topic_factory("signals.device")
    await produce_json(broker, topic, [signal(1)])
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"\xff\xfe garbage", key=b"user:x")
    finally:
        await producer.stop()
    result = vigil(broker, "tail", topic, "--from-beginning", "--timeout", "2")
    assert result.returncode == 0
    assert [v["event_id"] for v in json_lines(result.stdout)] == ["e-1"]
    assert "@1: cannot decode" in result.stderr
    result = vigil(broker, "tail", topic, "--from-beginning", "--timeout", "2", "--meta")
    raw = json_lines(result.stdout)[1]
    assert raw["offset"] == 1 and "error" in raw and raw["kind"] is None
    assert raw["value"] == "//4gZ2FyYmFnZQ=="  # not UTF-8 → base64


def test_tail_unknown_topic_gives_up_after_timeout(broker: str) -> None:
    result = vigil(broker, "tail", "no.such.topic.x", "--timeout", "1")
    assert result.returncode == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("command", [["produce", "signals.device"], ["tail", "signals.device"]])
def test_unreachable_broker_is_a_clean_error(command: list[str]) -> None:
    from streams.kafka.broker import free_port

    result = vigil(f"127.0.0.1:{free_port()}", *command, stdin="{}", timeout=90)
    assert result.returncode == 1
    assert "cannot connect" in result.stderr and "Traceback" not in result.stderr
