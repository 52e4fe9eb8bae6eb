"""Keeps the remote ``auxData.jwt`` key sets of a worker fresh (Cerbos ``remote.url``).

One task per worker fetches every remote JWKS at start and again every ``refreshInterval``
(`streams.policy.auxdata.DEFAULT_REFRESH_SECONDS` without one). A failed fetch keeps the keys
the worker has, is logged and counted, and is retried after ``RETRY_SECONDS``; tokens of a
key set never fetched are refused (fail closed). Checks never wait for a fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from streams import metrics
from streams.policy.auxdata import MAX_JWKS_BYTES, AuxDataVerifier, RemoteKeySet

log = logging.getLogger(__name__)

RETRY_SECONDS = 30.0


class RemoteKeyRefresher:
    def __init__(self, verifier: AuxDataVerifier, timeout_s: float = 10.0) -> None:
        self.remotes = verifier.remote_key_sets()
        self.timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

    async def fetch(self, remote: RemoteKeySet, session: aiohttp.ClientSession) -> bool:
        """One fetch of one key set; True if its keys were replaced."""
        try:
            async with session.get(remote.url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise OSError(f"HTTP {resp.status}")
                count = remote.install(await resp.content.read(MAX_JWKS_BYTES + 1))
        except (OSError, ValueError, aiohttp.ClientError, TimeoutError) as exc:
            metrics.AUX_DATA_JWKS_FETCHES.labels("error").inc()
            log.warning(
                "auxData: JWKS of keyset %r (%s) not loaded: %s", remote.id, remote.url, exc
            )
            return False
        metrics.AUX_DATA_JWKS_FETCHES.labels("ok").inc()
        log.info("auxData: keyset %r: %d key(s) from %s", remote.id, count, remote.url)
        return True

    async def _run(self) -> None:
        due = dict.fromkeys(range(len(self.remotes)), 0.0)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                now = time.monotonic()
                for i, remote in enumerate(self.remotes):
                    if due[i] <= now:
                        ok = await self.fetch(remote, session)
                        due[i] = now + (remote.refresh_seconds if ok else RETRY_SECONDS)
                await asyncio.sleep(max(0.05, min(due.values()) - time.monotonic()))

    async def start(self) -> None:
        if self.remotes and self._task is None:
            self._task = asyncio.create_task(self._run(), name="aux-data-jwks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
