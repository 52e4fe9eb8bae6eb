"""The demo's live view: what the pipeline decided, as it happens.

Consumes ``authz.decisions``, ``authz.revocations`` and ``signals.deadletter`` without a
consumer group (all partitions assigned, starting at the true end, see ``streams.kafka.quirks``),
so watching never disturbs the workers' group. On a terminal it redraws a rich ``Live`` panel; on
anything else (CI logs, a pipe) it prints one line per revocation and dead letter, a status line
every few seconds, and a final summary, all of which a test can grep.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streams.demo.simulator import Outgoing
from streams.kafka.quirks import end_offsets
from streams.kafka.security import PLAINTEXT, KafkaSecurity

#: Revocation causes that come from the clock, not from a record someone sent.
CLOCK_CAUSES = frozenset({"time", "expiry"})
#: Rows in the revocation table.
RECENT_ROWS = 15
#: Window of the decisions/s rate.
RATE_WINDOW_S = 5.0
#: How often the non-TTY view prints a status line.
STATUS_EVERY_S = 5.0
#: Send times remembered for latency (oldest forgotten first).
SENT_AT_LIMIT = 200_000
#: Dead letters listed under the revocations on a terminal.
DEADLETTER_ROWS = 3
#: The rule column when no rule allowed an action and no deny rule matched: Cerbos's default deny
#: (a signal the policy needs is unknown, or has a value no ALLOW rule accepts).
DEFAULT_DENY = "default-deny"
#: Causes that are not a signal, in words.
CAUSE_WORDS = {
    "grant-issued": "checked when the grant was issued",
    "time": "time passed (policy reads now())",
    "expiry": "grant expired",
}
#: Attribute values a cause description shows (in this order); others are left out.
SHOWN_ATTRIBUTES = (
    "current_status",
    "current_level",
    "zone",
    "anomalies",
    "session_id",
    "device_id",
    "reason",
    "change_type",
)


def describe_signal(record: Mapping[str, Any]) -> str:
    """``device-compliance-change current_status=not-compliant device_id=D1``: the type and the
    values that made a policy change its mind."""
    attrs = record.get("attributes")
    parts = [str(record.get("type") or "?")]
    if isinstance(attrs, Mapping):
        for name in SHOWN_ATTRIBUTES:
            value = attrs.get(name)
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            if value not in (None, ""):
                parts.append(f"{name}={value}")
    return " ".join(parts)


def shorten(text: str, width: int) -> str:
    """``text`` cut at a word boundary to at most ``width`` characters, with "…" if cut."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut) + "…"


@dataclass(frozen=True, slots=True)
class RevocationRow:
    """One revocation as the view shows it."""

    revoked_at: int
    subject: str
    grant_id: str
    denied: tuple[str, ...]
    rule: str
    cause_kind: str
    cause_id: str
    latency_ms: float | None
    cause_text: str = ""  # what happened: the signal type and the values it carried


@dataclass(slots=True)
class DemoStats:
    """Counters shared by the producer side (what was sent) and the view (what came back).

    Both sides run on the same event loop, so plain attributes need no locking.
    """

    signals_sent: int = 0
    risky_sent: int = 0
    grants_sent: int = 0
    malformed_sent: int = 0
    allow: int = 0
    deny: int = 0
    revocations: int = 0
    deadletters: int = 0
    last_deadletter: str = ""
    recent_deadletters: deque[str] = field(default_factory=lambda: deque(maxlen=DEADLETTER_ROWS))
    recent: deque[RevocationRow] = field(default_factory=lambda: deque(maxlen=RECENT_ROWS))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    sent_at: OrderedDict[str, int] = field(default_factory=OrderedDict)
    sent_what: OrderedDict[str, str] = field(default_factory=OrderedDict)
    decision_times: deque[tuple[float, int]] = field(default_factory=deque)

    def record_sent(self, out: Outgoing, at_ms: int) -> None:
        """Count a produced record and remember when its cause id left, for latency."""
        if out.kind == "signal":
            self.signals_sent += 1
            self.risky_sent += out.risky
        elif out.kind == "grant":
            self.grants_sent += 1
        else:
            self.malformed_sent += 1
        if out.track_id is not None:
            self.sent_at[out.track_id] = at_ms
            if len(self.sent_at) > SENT_AT_LIMIT:
                self.sent_at.popitem(last=False)
            if out.kind == "signal" and out.record is not None:
                self.sent_what[out.track_id] = describe_signal(out.record)
                if len(self.sent_what) > SENT_AT_LIMIT:
                    self.sent_what.popitem(last=False)

    def record_decision(self, decision: Mapping[str, Any], now: float) -> None:
        if decision.get("effect") == "EFFECT_ALLOW":
            self.allow += 1
        else:
            self.deny += 1
        if self.decision_times and now - self.decision_times[-1][0] < 0.05:
            at, n = self.decision_times[-1]
            self.decision_times[-1] = (at, n + 1)
        else:
            self.decision_times.append((now, 1))

    def record_revocation(self, rev: Mapping[str, Any]) -> RevocationRow:
        """Count a revocation; latency = ``revoked_at`` − when its cause was sent.

        Falls back to the cause's event time when the cause was not sent by this demo run. Time
        and expiry revocations have no latency: nothing was sent, the clock caused them.
        """
        cause = rev.get("cause") or {}
        cause_id = str(cause.get("event_id") or "")
        revoked_at = int(rev.get("revoked_at") or 0)
        sent = self.sent_at.get(cause_id, rev.get("cause_event_time"))
        if cause.get("kind") in CLOCK_CAUSES:
            sent = None
        latency = float(revoked_at - int(sent)) if sent and revoked_at else None
        row = RevocationRow(
            revoked_at=revoked_at,
            subject=str(rev.get("subject") or ""),
            grant_id=str(rev.get("grant_id") or ""),
            denied=tuple(rev.get("denied_actions") or ()),
            rule=str(rev.get("rule") or DEFAULT_DENY),
            cause_kind=str(cause.get("kind") or ""),
            cause_id=cause_id,
            latency_ms=latency,
            cause_text=self._cause_text(str(cause.get("kind") or ""), cause_id),
        )
        self.revocations += 1
        self.recent.appendleft(row)
        if latency is not None:
            self.latencies.append(latency)
        return row

    def _cause_text(self, kind: str, cause_id: str) -> str:
        """What caused a revocation, in words: the signal this run sent, else the cause kind."""
        if kind == "signal":
            return self.sent_what.get(cause_id) or f"signal {cause_id} (not sent by this run)"
        if kind == "policy-change":
            return f"policy bundle changed to {cause_id[:19]}"
        return CAUSE_WORDS.get(kind, kind)

    def record_deadletter(self, dead: Mapping[str, Any]) -> str:
        """Count a dead letter; the whole reason (the pipeline already bounds it) for the feed."""
        self.deadletters += 1
        self.last_deadletter = f"{dead.get('topic')} [{dead.get('error')}] {dead.get('reason')}"
        self.recent_deadletters.appendleft(self.last_deadletter)
        return self.last_deadletter

    @property
    def decisions(self) -> int:
        return self.allow + self.deny

    def decisions_per_second(self, now: float) -> float:
        """Decisions seen in the last ``RATE_WINDOW_S`` seconds, per second."""
        while self.decision_times and now - self.decision_times[0][0] > RATE_WINDOW_S:
            self.decision_times.popleft()
        return sum(n for _, n in self.decision_times) / RATE_WINDOW_S

    def latency_percentiles(self) -> tuple[float, float] | None:
        """(p50, p95) of recent signal→revocation latencies in ms, or None before the first."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2]
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        return p50, p95

    def summary(self, now: float) -> str:
        """One line with every counter: the non-TTY status line and the final summary."""
        lat = self.latency_percentiles()
        lat_text = f" latency_ms p50={lat[0]:.0f} p95={lat[1]:.0f}" if lat else ""
        return (
            f"signals={self.signals_sent} (risky {self.risky_sent}) grants={self.grants_sent} "
            f"malformed={self.malformed_sent} decisions={self.decisions} "
            f"(ALLOW {self.allow} / DENY {self.deny}) "
            f"decisions/s={self.decisions_per_second(now):.1f} "
            f"revocations={self.revocations} dead_letters={self.deadletters}{lat_text}"
        )


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _latency_text(latency: float | None) -> str:
    return "-" if latency is None else f"{latency:.0f}"


class LiveView:
    """Consumes the pipeline's outputs into ``DemoStats`` and shows them."""

    def __init__(
        self,
        bootstrap: str,
        stats: DemoStats,
        *,
        decisions_topic: str = "authz.decisions",
        revocations_topic: str = "authz.revocations",
        deadletter_topic: str = "signals.deadletter",
        info: Mapping[str, str] | None = None,
        tty: bool | None = None,
        out: IO[str] | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.stats = stats
        self.decisions_topic = decisions_topic
        self.revocations_topic = revocations_topic
        self.deadletter_topic = deadletter_topic
        self.info = dict(info or {})
        self.out = out or sys.stdout
        self.console = Console(file=self.out)
        self.tty = self.console.is_terminal if tty is None else tty
        self.started = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._live: Live | None = None
        self._last_status = time.monotonic()

    async def start(self) -> None:
        """Assign every partition of the three topics at their current end."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            **self.security.client_kwargs(),
        )
        await consumer.start()
        self._consumer = consumer
        topics = (self.decisions_topic, self.revocations_topic, self.deadletter_topic)
        tps: list[TopicPartition] = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if parts:
                    break
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
                parts = consumer.partitions_for_topic(topic)
            if not parts:
                raise RuntimeError(f"topic {topic} does not exist")
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        consumer.assign(tps)
        for tp, offset in (await end_offsets(consumer, tps)).items():
            consumer.seek(tp, offset)
        for tp in tps:
            await consumer.position(tp)
        self.started = time.monotonic()
        if self.tty:
            self._live = Live(
                self.render(), console=self.console, auto_refresh=False, transient=False
            )
            self._live.start()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and redraw until ``stop`` is set."""
        assert self._consumer is not None
        while not stop.is_set():
            await self.poll(0.25)

    async def poll(self, timeout_s: float) -> None:
        """One fetch, then a redraw (TTY) or the due status line (non-TTY)."""
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=5000)
        for records in batch.values():
            for record in records:
                self._handle(record)
        now = time.monotonic()
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
        elif now - self._last_status >= STATUS_EVERY_S:
            self._last_status = now
            self._line(f"[{_clock(int(time.time() * 1000))}] status  {self.stats.summary(now)}")

    def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        from streams.codecs import DecodeError, decode_any  # lazy: loads every schema

        if record.value is None:
            return
        try:
            _, value = decode_any(record.value, list(record.headers or ()))
        except DecodeError:
            return
        if record.topic == self.decisions_topic:
            self.stats.record_decision(value, time.monotonic())
        elif record.topic == self.revocations_topic:
            row = self.stats.record_revocation(value)
            if self._live is None:
                self._line(
                    f"[{_clock(row.revoked_at)}] REVOKED {row.subject} grant={row.grant_id} "
                    f"denied={','.join(row.denied)} rule={row.rule} "
                    f"cause={row.cause_kind}:{row.cause_id} ({row.cause_text}) "
                    f"latency_ms={_latency_text(row.latency_ms)}"
                )
        elif record.topic == self.deadletter_topic:
            text = self.stats.record_deadletter(value)
            if self._live is None:
                self._line(f"[{_clock(int(time.time() * 1000))}] DEAD-LETTER {text}")

    def _line(self, text: str) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.out.write(text + "\n")
            self.out.flush()

    def render(self) -> RenderableType:
        """The TTY panel: header, counters, latest revocations."""
        now = time.monotonic()
        s = self.stats
        elapsed = int(now - self.started)
        header = Text.assemble(
            ("Vigil demo", "bold"),
            f"  ·  elapsed {elapsed // 60:02d}:{elapsed % 60:02d}  ·  ",
            "  ·  ".join(f"{k} {v}" for k, v in self.info.items()),
            ("   (Ctrl-C to stop)", "dim"),
        )
        counters = Table.grid(padding=(0, 3))
        for _ in range(6):
            counters.add_column(justify="left")
        lat = s.latency_percentiles()
        counters.add_row(
            Text.assemble(("signals sent ", "dim"), (str(s.signals_sent), "bold")),
            Text.assemble(("risky ", "dim"), (str(s.risky_sent), "bold yellow")),
            Text.assemble(("grants issued ", "dim"), (str(s.grants_sent), "bold")),
            Text.assemble(
                ("decisions ", "dim"),
                (str(s.decisions), "bold"),
                " (",
                (f"ALLOW {s.allow}", "green"),
                " / ",
                (f"DENY {s.deny}", "red"),
                ")",
            ),
            Text.assemble(("decisions/s ", "dim"), (f"{s.decisions_per_second(now):.1f}", "bold")),
            Text.assemble(("malformed sent ", "dim"), (str(s.malformed_sent), "bold")),
        )
        counters.add_row(
            Text.assemble(("revocations ", "dim"), (str(s.revocations), "bold red")),
            Text.assemble(("dead letters ", "dim"), (str(s.deadletters), "bold magenta")),
            Text.assemble(
                ("latency p50/p95 ", "dim"),
                (f"{lat[0]:.0f}/{lat[1]:.0f} ms" if lat else "-", "bold"),
            ),
            Text(""),
            Text(""),
            Text(""),
        )
        table = Table(title="latest revocations", expand=True, title_justify="left")
        table.add_column("time", no_wrap=True)
        table.add_column("subject", no_wrap=True)
        table.add_column("grant", no_wrap=True)
        table.add_column("denied", style="red")
        table.add_column("rule", style="yellow")
        table.add_column("what happened")
        table.add_column("after ms", justify="right")
        for row in s.recent:
            table.add_row(
                _clock(row.revoked_at),
                row.subject,
                row.grant_id,
                ",".join(row.denied),
                row.rule,
                row.cause_text or f"{row.cause_kind}:{row.cause_id}",
                _latency_text(row.latency_ms),
            )
        parts: list[RenderableType] = [Panel(Group(header, Text(""), counters)), table]
        for text in s.recent_deadletters:
            parts.append(Text.assemble(("dead letter: ", "magenta"), shorten(text, 160)))
        return Group(*parts)

    async def stop(self) -> None:
        """Stop consuming, leave the last frame on screen and print the final summary."""
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        self._line(f"summary: {self.stats.summary(time.monotonic())}")
