"""Wires the check API into a worker: live state lookup, audit producer, revocation feed, HTTP
server.

Started by ``streams.app.PipelineService`` after the pipeline runner, stopped before it. A
subject's signal state comes from the worker's own partition store when it owns the subject's
partition, else from the changelog-fed ``SignalReplica`` (its own RocksDB under the data dir,
resumed across restarts; docs/check-api.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from streams.kafka.security import KafkaSecurity
from streams.policy.auxdata import NO_KEY_SETS, AuxDataVerifier
from streams.processing.check import Limits, LiveChecker
from streams.processing.pipeline import Pipeline
from streams.settings import Settings
from streams.ssf.service import SsfService
from streams.state.replica import SignalReplica, partition_of
from streams.state.store import signal_key
from streams.web.audit import AuditPublisher
from streams.web.aux_keys import RemoteKeyRefresher
from streams.web.check_api import CheckApi, tls_context
from streams.web.revocation_stream import RevocationStreams
from streams.web.revocations import RevocationFeed
from streams.web.tokens import ApiTokens
from streams.web.watch import GrantPublisher

if TYPE_CHECKING:
    from streams.processing.runner import PipelineRunner

log = logging.getLogger(__name__)


class CheckApiService:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        runner: PipelineRunner,
        security: KafkaSecurity,
        replica_dir: Path | None,
    ) -> None:
        """Reads the token file and TLS files now: a bad one stops the worker at startup.
        ``replica_dir``: where the signal replica keeps its RocksDB (None: a temporary dir)."""
        self.settings = settings
        self.runner = runner
        self.replica = SignalReplica(
            bootstrap=settings.bootstrap_servers,
            topic=settings.topic_changelog,
            path=replica_dir,
            security=security,
        )
        self.audit = AuditPublisher(
            bootstrap=settings.bootstrap_servers,
            topic=settings.topic_decisions,
            capacity=settings.api_audit_queue,
            output_format=settings.output_format,
            registry_url=settings.schema_registry_url,
            security=security,
        )
        self.grants = GrantPublisher(
            bootstrap=settings.bootstrap_servers, topic=settings.topic_grants, security=security
        )
        aux_data = (
            AuxDataVerifier.from_file(settings.aux_data_config)
            if settings.aux_data_config is not None
            else NO_KEY_SETS
        )
        self.aux_keys = RemoteKeyRefresher(aux_data)  # remote auxData.jwt key sets, if any
        self.checker = LiveChecker(
            lambda: pipeline.engine,
            pipeline.risk,
            self.signal_state,
            Limits(settings.api_max_resources_per_request, settings.api_max_actions_per_resource),
            aux_data,
        )
        self.feed = RevocationFeed(
            bootstrap=settings.bootstrap_servers,
            topic=settings.topic_revocations,
            history=settings.api_sse_history,
            registry_url=settings.schema_registry_url,
            security=security,
        )
        tokens = ApiTokens.from_file(settings.api_tokens) if settings.api_tokens else None
        self.ssl = (
            tls_context(
                settings.api_tls_certfile, settings.api_tls_keyfile, settings.api_tls_client_cafile
            )
            if settings.api_tls_certfile is not None and settings.api_tls_keyfile is not None
            else None
        )
        # Shared Signals: its push endpoint shares this listener (a bad config fails here)
        self.ssf = SsfService(settings, security) if settings.ssf_config is not None else None
        self.api = CheckApi(
            self.checker,
            ready=self.ready,
            audit=self.audit,
            grants=self.grants,
            tokens=tokens,
            revocations=RevocationStreams(
                self.feed,
                max_streams=settings.api_sse_max_streams,
                buffer=settings.api_sse_buffer,
                heartbeat_seconds=settings.api_sse_heartbeat_seconds,
            ),
            max_body_bytes=settings.api_max_body_bytes,
            extensions=self.ssf.extensions if self.ssf is not None else [],
        )

    def ready(self) -> bool:
        return self.runner.ready.is_set() and self.replica.ready.is_set()

    def signal_state(self, subject_key: bytes) -> bytes | None:
        """The owner's store if this worker owns the subject's partition, else the replica."""
        if self.replica.partitions:
            store = self.runner.stores.get(partition_of(subject_key, self.replica.partitions))
            if store is not None:
                return store.get(signal_key(subject_key))
        return self.replica.get(subject_key)

    async def start(self) -> None:
        s = self.settings
        await self.aux_keys.start()
        await self.api.start(s.api_host, s.api_port, self.ssl)
        await self.audit.start()
        await self.grants.start()
        await self.replica.start()
        await self.feed.start()
        if self.ssf is not None:
            await self.ssf.start()
        log.warning(
            "check API on %s://%s:%s", "https" if self.ssl else "http", s.api_host, self.api.port
        )

    async def stop(self) -> None:
        self.feed.close_streams()  # open streams end now, or the server waits for them
        await self.api.stop()
        await self.aux_keys.stop()
        await self.feed.stop()
        if self.ssf is not None:
            await self.ssf.stop()
        await self.audit.stop()
        await self.grants.stop()
        await self.replica.stop()
