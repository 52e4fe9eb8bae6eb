"""The bench's summary of issue 10's goals and its handling of a failing part (no broker)."""

import asyncio
from typing import Any

from bench import report
from bench.run import run_part


def _results(mix: float, quix: float, rss: int, restore_s: float) -> dict[str, Any]:
    lat = {"offered_rate": 2000, "revocation": {"first_per_signal": {"p99_ms": 300.0}}}
    relay = {"revocation": {"first_per_signal": {"p99_ms": 100.0}}}
    return {
        "vigil_mix": {"drain_rate": mix},
        "vigil_hot": {"drain_rate": mix / 4},
        "quix": {"drain_rate": quix},
        "latency": {**lat, "achieved_send_rate": 2000},
        "relay_latency": relay,
        "memory": {"rss_at_1m_subjects": rss, "rss_at_1m_extrapolated": False},
        "restore": {"projected_1m_s": restore_s, "subjects": 1_100_000, "rss": {"VmRSS": rss}},
    }


def _row(lines: list[str], goal: str) -> str:
    (row,) = [line for line in lines if line.startswith(f"| {goal}")]
    return row


def test_goals_give_figure_baseline_ratio_and_verdict() -> None:
    lines = report.goals_lines(_results(mix=3000, quix=9000, rss=900 * 2**20, restore_s=90.0))
    assert "| 0.33× | ≥ 1.0× | **not met** |" in _row(lines, "1. Throughput")
    assert "300.0 ms | relay p99 100.0 ms | 3.00× | ≤ 2× | **not met** |" in _row(lines, "2.")
    assert _row(lines, "3. Memory: RSS with 1M").endswith("**met** |")
    assert _row(lines, "4. Restore").endswith("**not met** |")

    met = report.goals_lines(_results(mix=9000, quix=9000, rss=2**31, restore_s=30.0))
    assert _row(met, "1. Throughput").endswith("**met** |")
    assert _row(met, "3. Memory: RSS of the restored").endswith("**not met** |")
    assert _row(met, "4. Restore").endswith("**met** |")


def test_a_failing_part_is_recorded_and_the_run_goes_on() -> None:
    results: dict[str, Any] = {"restore": {"state": "partial"}}

    async def broken() -> None:
        raise KeyError("s:device:D-1")

    async def fine() -> None:
        results["ephemeral"] = {"ok": True}

    async def both() -> None:
        await run_part("h", "restore", broken, results)
        await run_part("i", "ephemeral", fine, results)

    asyncio.run(both())
    assert results["restore"]["error"] == "KeyError: 's:device:D-1'"
    assert results["restore"]["state"] == "partial"  # what the part measured is kept
    assert results["failed"] == ["(h) KeyError: 's:device:D-1'"]
    assert results["ephemeral"] == {"ok": True}
    assert "did not complete" in "\n".join(report.goals_lines(results))


def test_a_drain_counted_in_one_step_still_gives_a_rate() -> None:
    """Counters move once per batch: a backlog drained in one batch shows a single step."""
    from bench.measure import Drain
    from bench.worker import Sample

    base = Sample(10.0, {"signals": 100.0})
    polls = [base, Sample(10.25, {"signals": 100.0}), Sample(10.5, {"signals": 6100.0})]
    summary = Drain("signals", base, polls, produced_at=10.1).summary()
    assert summary["processed"] == 6000
    assert summary["rate"] == 6000 / 0.25  # from the poll before the step


def test_only_a_full_run_writes_latest_json() -> None:
    from bench.run import ALL_PARTS, results_name

    assert results_name(quick=False, only=ALL_PARTS) == "latest.json"
    assert results_name(quick=False, only="b") == "partial.json"
    assert results_name(quick=True, only=ALL_PARTS) == "quick.json"
