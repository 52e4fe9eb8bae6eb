"""Wires the Shared Signals receiver into a worker: config, verifier, ledger, locator, writer,
the push endpoint on the API listener and one poller per poll transmitter.

Built when the worker starts (a bad ``--ssf-config`` stops it at once) and started after the
check API, whose listener serves ``POST /ssf/push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp

from streams import metrics
from streams.kafka.admin import ensure_topics
from streams.kafka.security import KafkaSecurity
from streams.settings import Settings
from streams.ssf.config import SsfConfig, Transmitter, load_ssf_config
from streams.ssf.follow import GrantLocator, JtiLedger
from streams.ssf.management import StreamClient, StreamError
from streams.ssf.poll import Poller
from streams.ssf.push import PushEndpoint
from streams.ssf.receiver import SetReceiver, SignalWriter
from streams.ssf.signing import SigningKeys
from streams.ssf.transmit import RevocationTransmitter
from streams.ssf.verify import SetVerifier
from streams.web.check_api import ApiExtension

log = logging.getLogger(__name__)
VERIFICATION_TIMEOUT_S = 30.0


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
            SetVerifier(self.config),
            self.ledger,
            self.writer,
            self.locator,
            max_future_skew_ms=settings.max_future_skew_seconds * 1000,
        )
        self.push = PushEndpoint(self.receiver, self.ready)
        self.keys = (
            SigningKeys(self.config.signing_keys) if self.config.signing_keys is not None else None
        )
        self.transmitter = (
            RevocationTransmitter(
                self.config,
                self.keys,
                bootstrap=settings.bootstrap_servers,
                group_id=f"{settings.group_id}-ssf-transmitter",
                revocations_topic=settings.topic_revocations,
                outbound_topic=settings.topic_ssf_outbound,
                deadletter_topic=settings.topic_deadletter,
                output_format=settings.output_format,
                registry_url=settings.schema_registry_url,
                security=security,
            )
            if self.keys is not None
            else None
        )
        self.pollers = [
            Poller(t, self.receiver) for t in self.config.transmitters if t.delivery == "poll"
        ]
        self._tasks: list[asyncio.Task[None]] = []
        #: managed streams by transmitter: {"stream": configuration, "verified": bool}
        self.streams: dict[str, dict[str, Any]] = {}

    @property
    def extensions(self) -> list[ApiExtension]:
        """Routes on the API listener: the push endpoint, and discovery and keys when Vigil
        transmits."""
        routes: list[ApiExtension] = [self.push]
        if self.transmitter is not None:
            routes.append(self.transmitter)
        return routes

    async def _manage(self, transmitter: Transmitter) -> None:
        """Discover, create or update our stream, verify it; retried until it works."""
        delay = 1.0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            client = StreamClient(transmitter, session)
            while True:
                try:
                    await client.discover()
                    stream = await client.ensure()
                    stream_id = str(stream["stream_id"])
                    self.streams[transmitter.name] = {"stream": stream, "verified": False}
                    state = await client.request_verification(stream_id)
                    deadline = time.monotonic() + VERIFICATION_TIMEOUT_S
                    while time.monotonic() < deadline:
                        seen = self.receiver.stream_events.get(transmitter.name, {})
                        if seen.get("verification", {}).get("state") == state:
                            self.streams[transmitter.name]["verified"] = True
                            metrics.SSF_STREAM_VERIFIED.labels(transmitter.name).set(1)
                            log.warning(
                                "SSF: stream %s of %s verified", stream_id, transmitter.name
                            )
                            return
                        await asyncio.sleep(0.2)
                    raise StreamError(
                        f"no verification event with our state in {VERIFICATION_TIMEOUT_S:g} s"
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    metrics.SSF_STREAM_VERIFIED.labels(transmitter.name).set(0)
                    log.warning(
                        "SSF: managing the stream of %s failed (%s); retrying in %.0f s",
                        transmitter.name,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)

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
        self._tasks += [
            asyncio.create_task(self._manage(t))
            for t in self.config.transmitters
            if t.manage_stream
        ]
        if self.transmitter is not None and self.config.receivers:
            await ensure_topics(
                s.bootstrap_servers, [s.topic_ssf_outbound], s.partitions, security=self.security
            )
            await self.transmitter.start()
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
        if self.transmitter is not None:
            await self.transmitter.stop()
        await self.ledger.stop()
        await self.locator.stop()
        await self.writer.stop()
