"""The (g) memory and (h) restore bench parts run end to end on a tiny state (no timings checked:
the figures are the bench's business; this checks that they are produced and add up)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bench import memory, report, restore
from bench.profile import _short
from bench.run import QUICK

TINY = dataclasses.replace(QUICK, subjects=20, chunk_subjects=10, drain_timeout_s=90)


async def test_memory_then_restore_of_the_same_state(broker: str, tmp_path: Path) -> None:
    results: dict[str, Any] = {}
    await memory.run_memory(broker, TINY, results, tmp_path)
    mem = results["memory"]
    assert mem["subjects"]["count"] == 200  # 10 signal-only subjects per grant subject
    assert mem["grants"]["subjects"] == 20 and mem["grants"]["count"] == 200
    for step in ("idle", "subjects", "grants"):
        assert mem[step]["VmRSS"] > 0 and mem[step]["VmHWM"] >= mem[step]["VmRSS"]
    assert mem["grants"]["disk"] > mem["idle"]["disk"]
    assert {"bytes_per_subject", "bytes_per_grant", "rss_at_1m_subjects"} <= set(mem)

    await restore.run_restore(broker, TINY, results, tmp_path)
    res = results["restore"]
    # the fresh worker replayed the whole changelog and holds the state the first one built
    assert res["restored_records"] == res["changelog_records"] > 0
    assert res["subjects_after"] == 220 and res["active_grants_after"] == 200
    assert res["changelog_bytes_per_state_change"] > 0

    text = "\n".join(memory.markdown(results) + restore.markdown(results))
    assert "(g) Memory" in text and "(h) Restore" in text
    assert "(g) Memory" in report.markdown(_minimal_run(results))

    # grown by copies (the load's devices hold grant state alone: not templates), under
    # py-spy: the CPU split by thread and component
    state = results["restore"]["state"]
    await restore.run_restore(
        broker, TINY, results, tmp_path / "grown", scale_to=300, profile=tmp_path / "profile"
    )
    res = results["restore"]
    assert res["grown"]["signal_only"] == 300 - state["signal_subjects"]
    assert res["subjects_after"] == res["subjects"] == 330  # 300 signal-only + 30 with grants
    assert res["active_grants_after"] == 300
    threads = res["cpu_s_by_thread_to_healthy"]
    assert threads["main"] > 0 and sum(threads.values()) <= res["cpu_s_to_healthy"] + 0.1
    parts = res["cpu_components_to_healthy"]
    assert sum(c["samples"] for c in parts) > 0
    assert "imports (module code, bytecode compile)" in {c["component"] for c in parts}
    assert "Main thread by component" in "\n".join(restore.markdown(results))


def test_a_sampled_stack_is_named_by_the_first_matching_component() -> None:
    root = ["<module> (.venv/bin/vigil:8)", "command (streams/commands/worker.py:40)"]
    replay = ["replay.<locals>.one (streams/kafka/replay.py:110)"]
    write = ["PipelineRunner._restore_into.<locals>.apply (streams/processing/runner.py:890)"]
    write += ["RocksStore.write (streams/state/store.py:110)"]
    cases = {
        "restore: RocksDB writes (store.write)": root + replay + write,
        "restore: replay fetch + batch parse": root + replay,
        "imports (module code, bytecode compile)": root
        + ["_find_and_load (<frozen importlib._bootstrap>:1176)"],
        "event loop poll (epoll)": root + ["EpollSelector.select (selectors.py:468)"],
        "leaf: faust": root + ["Worker.on_start (faust/worker.py:300)"],
    }
    for label, stack in cases.items():
        assert restore.classify([_short(f) for f in stack]) == label, stack


def _minimal_run(results: dict[str, Any]) -> dict[str, Any]:
    """What ``bench.run`` adds around the parts' results (``--only gh``)."""
    return {
        **results,
        "date": "now",
        "command": "bench.run --only gh",
        "plan": dataclasses.asdict(TINY),
        "machine": {
            "nproc": "2",
            "cpu": "cpu",
            "python": "3.11",
            "loadavg_start": "0",
            "free_g": "",
        },
        "mix": {"changing": 0.2, "revoking_of_changing": 0.05},
    }
