"""``DemoStats``: counting, latency from the recorded send time, the summary line the e2e test
and CI logs read."""

from __future__ import annotations

import io

from rich.console import Console

from streams.demo.simulator import Outgoing
from streams.demo.view import DemoStats, LiveView, shorten


def revocation(event_id: str, revoked_at: int, cause_time: int) -> dict[str, object]:
    return {
        "grant_id": "g-1",
        "subject": "user:alice",
        "cause": {"kind": "signal", "event_id": event_id},
        "denied_actions": ["write"],
        "rule": "write-needs-compliant-device",
        "revoked_at": revoked_at,
        "cause_event_time": cause_time,
    }


def test_counts_what_was_sent() -> None:
    stats = DemoStats()
    stats.record_sent(Outgoing("t", "user:a", b"{}", "signal", "e1", risky=True), 1_000)
    stats.record_sent(Outgoing("t", "user:a", b"{}", "signal", "e2"), 1_000)
    stats.record_sent(Outgoing("t", "user:a", b"{}", "grant", "g@1"), 1_000)
    stats.record_sent(Outgoing("t", "user:a", b"{", "malformed"), 1_000)
    assert (stats.signals_sent, stats.risky_sent, stats.grants_sent, stats.malformed_sent) == (
        2,
        1,
        1,
        1,
    )


def test_latency_uses_send_time_then_event_time() -> None:
    stats = DemoStats()
    stats.record_sent(Outgoing("t", "user:a", b"{}", "signal", "e1"), 10_000)
    row = stats.record_revocation(revocation("e1", 10_025, 9_000))
    assert row.latency_ms == 25.0  # our send time wins over the event time
    row = stats.record_revocation(revocation("other-run", 10_040, 10_000))
    assert row.latency_ms == 40.0
    assert stats.revocations == 2 and stats.recent[0].cause_id == "other-run"
    assert stats.latency_percentiles() == (40.0, 40.0)


def test_expiry_and_time_revocations_have_no_latency() -> None:
    stats = DemoStats()
    for kind in ("expiry", "time"):
        rev = revocation(f"g-1@{9_000}", 10_040, 9_000)
        rev["cause"] = {"kind": kind, "event_id": "g-1@9000"}
        assert stats.record_revocation(rev).latency_ms is None
    assert stats.revocations == 2 and stats.latency_percentiles() is None


def test_rule_none_is_shown_as_default_deny() -> None:
    stats = DemoStats()
    rev = revocation("e1", 2, 1)
    rev["rule"] = None
    assert stats.record_revocation(rev).rule == "default-deny"


def test_decisions_and_rate() -> None:
    stats = DemoStats()
    for i in range(10):
        stats.record_decision({"effect": "EFFECT_ALLOW" if i % 5 else "EFFECT_DENY"}, 100.0 + i)
    assert (stats.allow, stats.deny, stats.decisions) == (8, 2, 10)
    # only the last 5 s count: decisions at t=104..109 seen at t=109
    assert stats.decisions_per_second(109.0) == 6 / 5


def test_summary_line_is_greppable() -> None:
    stats = DemoStats()
    stats.record_revocation(revocation("e1", 2, 1))
    stats.record_deadletter({"topic": "signals.device", "error": "decode", "reason": "bad"})
    line = stats.summary(0.0)
    assert "revocations=1" in line and "dead_letters=1" in line
    assert stats.last_deadletter == "signals.device [decode] bad"


def test_render_works_without_a_terminal() -> None:
    stats = DemoStats()
    stats.record_revocation(revocation("e1", 1_795_000_000_000, 1_794_999_999_990))
    out = io.StringIO()
    view = LiveView("127.0.0.1:1", stats, tty=False, out=out, info={"rate": "50/s"})
    assert view.tty is False
    Console(file=out, width=200).print(view.render())
    text = out.getvalue()
    assert "user:alice" in text and "write-needs-compliant-device" in text


def test_a_revocation_says_which_signal_and_values_caused_it() -> None:
    stats = DemoStats()
    record = {
        "event_id": "e1",
        "type": "device-compliance-change",
        "attributes": {"device_id": "D1", "current_status": "not-compliant"},
    }
    stats.record_sent(Outgoing("t", "user:alice", b"{}", "signal", "e1", record=record), 1_000)
    row = stats.record_revocation(revocation("e1", 1_025, 900))
    assert row.cause_text == "device-compliance-change current_status=not-compliant device_id=D1"
    assert row.latency_ms == 25.0
    other = stats.record_revocation(revocation("unknown", 1_030, 900))
    assert other.cause_text == "signal unknown (not sent by this run)"


def test_dead_letter_reasons_are_kept_whole() -> None:
    stats = DemoStats()
    reason = "signal type 'device-compliance-change' belongs on the device topic; " * 4
    text = stats.record_deadletter(
        {"topic": "signals.identity", "error": "validation", "reason": reason}
    )
    assert text.endswith(reason) and stats.recent_deadletters[0] == text


def test_shorten_cuts_at_a_word_boundary() -> None:
    assert shorten("short", 10) == "short"
    assert shorten("expected a JSON object, got array", 20) == "expected a JSON…"
