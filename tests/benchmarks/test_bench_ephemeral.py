"""The (i) ephemeral-workloads bench part runs end to end on a tiny burst (no timings checked:
the figures are the bench's business; this checks that the state it reads goes back to the
baseline once the burst expired, and that the part reports it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import ephemeral

TINY = ephemeral.EphemeralPlan(
    grants=200, workloads=10, lifetime_s=8.0, baseline_users=5, settle_timeout_s=90.0
)


async def test_a_tiny_burst_leaves_the_state_at_its_baseline(broker: str, tmp_path: Path) -> None:
    results: dict[str, Any] = {}
    await ephemeral.run_ephemeral(broker, TINY, results, tmp_path)
    r = results["ephemeral"]
    base, peak, after = r["baseline"], r["peak"], r["after"]
    assert base["store_keys"] == base["changelog_live_keys"] == 5  # one grant state per user
    assert peak["active_grants"] + r["arrived_expired"] == 205
    assert r["settled"]
    assert after["store_keys"] == after["changelog_live_keys"] == 5
    assert after["active_grants"] == 5
    assert r["grants_per_s"] > 0
    assert "(i) Ephemeral workloads" in "\n".join(ephemeral.markdown(results))
