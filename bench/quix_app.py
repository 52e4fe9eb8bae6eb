"""The peer: a Quix Streams app doing Vigil's minimal job on the same backlog shape.

Per signal: JSON decode, per-subject RocksDB state update (a dict of the newest value per signal
type, keyed by the record key = subject) and one JSON output message. Run as a subprocess by
``bench.quix``; it prints ``<unix time> <processed count>`` every 0.2 s so the driver can measure
throughput without consuming the output topic itself.

Usage: python -m bench.quix_app BROKER GROUP STATE_DIR OUTPUT_TOPIC INPUT_TOPIC...
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from quixstreams import Application, State

processed = 0


def on_processed(topic: str, partition: int, offset: int) -> None:
    global processed
    processed += 1


def report() -> None:
    """Progress lines on stdout (a daemon thread; costs one print per 0.2 s)."""
    while True:
        print(f"{time.time():.3f} {processed}", flush=True)
        time.sleep(0.2)


def update_subject(value: dict[str, Any], state: State) -> dict[str, Any]:
    """The stateful step: newest attributes per signal type, per subject."""
    subject = state.get("subject") or {"dims": {}, "events": 0}
    subject["dims"][value["type"]] = [value["event_time"], value["event_id"], value["attributes"]]
    subject["events"] += 1
    state.set("subject", subject)
    return {"event_id": value["event_id"], "subject": value["subject"], "events": subject["events"]}


def main(argv: list[str]) -> None:
    broker, group, state_dir, output, *inputs = argv
    app = Application(
        broker_address=broker,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
        on_message_processed=on_processed,
        producer_extra_config={"linger.ms": 5},
    )
    out_topic = app.topic(output, value_serializer="json", key_serializer="bytes")
    for name in inputs:
        sdf = app.dataframe(app.topic(name, value_deserializer="json", key_deserializer="bytes"))
        sdf = sdf.apply(update_subject, stateful=True)
        sdf.to_topic(out_topic)
    threading.Thread(target=report, daemon=True).start()
    app.run()


if __name__ == "__main__":
    main(sys.argv[1:])
