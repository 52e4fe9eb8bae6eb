"""Event-loop probe for a worker the check bench starts with ``--loop-probe`` (on its
``PYTHONPATH``; inert without ``VIGIL_LOOP_PROBE``). Not part of Vigil: it patches asyncio in
that process only, to answer "where does the check API's latency tail go?".

It appends to the file ``VIGIL_LOOP_PROBE`` names, one line per event, each after the process
id (a child process inherits the environment: the bench reads the worker's lines only):

Only the main thread's event loop (the worker's: pipeline and check API) is watched.

* ``C <unix time> <ms> <name>``: one event-loop callback that took more than 2 ms of the main
  thread's CPU time (``time.thread_time``: not inflated by the process waiting for a core),
  named by its task's coroutine (a check is ``RequestHandler._handle_request`` or an aiohttp
  handler task);
* ``G <unix time> <ms> <generation>``: one garbage collection (CPU time);
* ``L <unix time> <late ms> <own CPU ms>``: a 5 ms timer that fired more than 3 ms late, and
  how much of that time the main thread ran: the rest it waited for a CPU (the machine).
"""

from __future__ import annotations

import os

_PATH = os.environ.get("VIGIL_LOOP_PROBE")


def _install(path: str) -> None:
    import asyncio
    import asyncio.events
    import gc
    import threading
    import time
    import weakref
    from typing import Any

    out = open(path, "a", buffering=1)  # noqa: SIM115 - for the process's lifetime
    pid = os.getpid()
    cpu = time.thread_time
    gc_started = [0.0]
    timed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = cpu()
        else:
            ms = (cpu() - gc_started[0]) * 1000
            out.write(f"{pid} G {time.time():.3f} {ms:.3f} {info['generation']}\n")

    gc.callbacks.append(collected)

    def name(callback: Any) -> str:
        task = getattr(callback, "__self__", None)
        if isinstance(task, asyncio.Task):
            coro = task.get_coro()
            return str(getattr(coro, "__qualname__", coro))
        return getattr(callback, "__qualname__", type(callback).__name__)

    def tick(due: float, used: float) -> None:
        now, now_cpu = time.perf_counter(), cpu()
        late = now - due
        if late > 0.003:
            out.write(
                f"{pid} L {time.time():.3f} {late * 1000:.2f} {(now_cpu - used) * 1000:.2f}\n"
            )
        asyncio.get_running_loop().call_later(0.005, tick, now + 0.005, cpu())

    run = asyncio.events.Handle._run

    main = threading.main_thread()

    def timed_run(self: asyncio.events.Handle) -> None:
        if threading.current_thread() is not main:  # another loop (a client's thread)
            run(self)
            return
        if self._loop not in timed:  # a loop's first callback starts its lateness timer
            timed.add(self._loop)
            self._loop.call_later(0.005, tick, time.perf_counter() + 0.005, cpu())
        started = cpu()
        run(self)
        took = cpu() - started
        if took > 0.002:
            out.write(f"{pid} C {time.time():.3f} {took * 1000:.2f} {name(self._callback)}\n")

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]


if _PATH:
    _install(_PATH)
