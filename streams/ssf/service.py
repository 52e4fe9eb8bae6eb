"""Wires the Shared Signals receiver into a worker: config, verifier, ledger, locator, writer,
the push endpoint on the API listener and one poller per poll transmitter.

Built when the worker starts (a bad ``--ssf-config`` stops it at once) and started after the
check API, whose listener serves ``POST /ssf/push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from streams.kafka.admin import ensure_topics
from streams.kafka.security import KafkaSecurity
from streams.settings import Settings
from streams.ssf.config import SsfConfig, load_ssf_config
from streams.ssf.follow import GrantLocator, JtiLedger
from streams.ssf.poll import Poller
from streams.ssf.push import PushEndpoint
from streams.ssf.receiver import SetReceiver, SignalWriter
from streams.ssf.verify import SetVerifier

log = logging.getLogger(__name__)


class SsfService:
    def __init__(self, settings: Settings, security: KafkaSecurity) -> None:
        assert settings.ssf_config is not None
        self.settings = settings
        self.security = security
        self.config: SsfConfig = load_ssf_config(settings.ssf_config)
        self.ledger = JtiLedger(
            bootstrap=settings.bootstrap_servers,
            topic=settings.topic_ssf_received,
            security=security,
        )
        self.locator = GrantLocator(
            bootstrap=settings.bootstrap_servers, topic=settings.topic_changelog, security=security
        )
        self.writer = SignalWriter(
            bootstrap=settings.bootstrap_servers,
            topics=dict(
                zip(("identity", "device", "network", "risk"), settings.signal_topics, strict=True)
            ),
            security=security,
        )
        self.receiver = SetReceiver(
            SetVerifier(self.config), self.ledger, self.writer, self.locator
        )
        self.push = PushEndpoint(self.receiver, self.ready)
        self.pollers = [
            Poller(t, self.receiver) for t in self.config.transmitters if t.delivery == "poll"
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def ready(self) -> bool:
        return self.ledger.ready.is_set() and self.locator.ready.is_set()

    async def start(self) -> None:
        s = self.settings
        await ensure_topics(
            s.bootstrap_servers,
            [],
            1,
            compacted=[s.topic_ssf_received],
            security=self.security,
        )
        await self.writer.start()
        await self.ledger.start()
        await self.locator.start()
        for transmitter in self.config.transmitters:  # first JWKS fetch now, not on the first SET
            await self.receiver.verifier.keys[transmitter.name].refresh()
        self._tasks = [asyncio.create_task(p.run()) for p in self.pollers]
        log.warning(
            "Shared Signals: %d transmitter(s), audience %s",
            len(self.config.transmitters),
            self.config.audience,
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.ledger.stop()
        await self.locator.stop()
        await self.writer.stop()
