"""Application wiring: the faust App (lifecycle, web views, the fleet agent) and the pipeline.

faust runs the worker process, its web server (``/metrics``, ``/healthz``, ``/livez``,
``/_cerbos/health``, ``/workers``) and a low-rate agent on ``vigil.workers`` that shows which
policy bundle every worker runs. The signal hot path is ``PipelineRunner``, a faust-managed
service that consumes in batches with its own consumer group (faust's per-event stream machinery
caps out near 2k events/s on these machines; see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import orjson
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics
from streams.bundles.signing import load_public_keys
from streams.bundles.watcher import BundleWatcher
from streams.fleet import Fleet
from streams.kafka.admin import ensure_topics
from streams.kafka.security import KafkaSecurity
from streams.policy.api import build_engine
from streams.processing.pipeline import Pipeline, Topics
from streams.processing.runner import PipelineRunner, RunnerConfig
from streams.processing.switch import GuardLimits
from streams.settings import Settings
from streams.state.risk import RiskModel
from streams.web.service import CheckApiService
from streams.web.webhooks import WebhookDispatcher, load_webhooks

WORKERS_TOPIC = "vigil.workers"
HEARTBEAT_SECONDS = 5.0

log = logging.getLogger(__name__)


def build_pipeline(settings: Settings) -> Pipeline:
    """Compile the policy bundle and risk model once; raise on a bundle that does not compile."""
    topics = Topics(
        signals=frozenset(settings.signal_topics),
        grants=settings.topic_grants,
        decisions=settings.topic_decisions,
        revocations=settings.topic_revocations,
        deadletter=settings.topic_deadletter,
        signal_roles=settings.signal_topic_roles,
        subscriptions=settings.topic_subscriptions,
    )
    return Pipeline(
        topics,
        build_engine(settings.policies, **settings.engine_options),
        RiskModel.from_file(settings.risk_model),
        output_format=settings.output_format,
        registry_url=settings.schema_registry_url,
        time_reevaluation_ms=round(settings.time_reevaluation_seconds * 1000),
        max_future_skew_ms=settings.max_future_skew_seconds * 1000,
        state_retention_ms=settings.state_retention_seconds * 1000,
    )


def in_memory(settings: Settings) -> bool:
    return str(settings.data_dir) == ":memory:"


def runner_config(settings: Settings, security: KafkaSecurity) -> RunnerConfig:
    return RunnerConfig(
        security=security,
        bootstrap=settings.bootstrap_servers,
        group_id=settings.group_id,
        input_topics=settings.input_topics,
        changelog_topic=settings.topic_changelog,
        data_dir=None if in_memory(settings) else settings.data_dir / "state",
        reevaluation_rate=settings.reevaluation_rate,
        expiry_sweep_rate=settings.expiry_sweep_rate,
        max_task_idle_ms=settings.max_task_idle_ms,
        fetch_trace=settings.fetch_trace,
        guard=GuardLimits(settings.bundle_max_revoke_share, settings.bundle_max_revoke_count),
    )


def replica_dir(settings: Settings) -> Path | None:
    """The check API's signal replica (RocksDB); None: a temporary one (``:memory:``)."""
    return None if in_memory(settings) else settings.data_dir / "replica"


def faust_dir(settings: Settings) -> Path:
    """faust's data folder: inside the worker's data dir, never the current directory."""
    if in_memory(settings):
        return Path(tempfile.mkdtemp(prefix="vigil-faust-"))
    path = settings.data_dir / "faust"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bundle_watcher(
    settings: Settings, running_digest: str, security: KafkaSecurity
) -> BundleWatcher:
    workdir = (
        Path(tempfile.mkdtemp(prefix="vigil-bundles-"))
        if in_memory(settings)
        else settings.data_dir / "bundles"
    )
    keys = None
    if settings.bundle_public_keys is not None:
        keys = load_public_keys(settings.bundle_public_keys)  # KeyFileError: refuse to start
    else:
        log.warning(
            "no --bundle-public-keys: bundle records on %s are not verified; anyone who can "
            "write that topic sets policy for every worker",
            settings.topic_bundles,
        )
    return BundleWatcher(
        bootstrap=settings.bootstrap_servers,
        topic=settings.topic_bundles,
        policies_dir=settings.policies,
        workdir=workdir,
        running_digest=running_digest,
        public_keys=keys,
        security=security,
        engine_options=settings.engine_options,
    )


class PipelineService(Service):
    """Runs the batch pipeline inside the faust worker's lifecycle."""

    def __init__(
        self, settings: Settings, pipeline: Pipeline, security: KafkaSecurity, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.pipeline = pipeline
        self.security = security
        self.runner = PipelineRunner(
            runner_config(settings, security),
            pipeline,
            bundle_watcher(settings, pipeline.engine.digest, security),
        )
        self._task: asyncio.Task[None] | None = None
        self._freezer: asyncio.Task[None] | None = None
        # The check API (off with api_port 0); built now so a bad token or TLS file fails early.
        self.api = (
            CheckApiService(settings, pipeline, self.runner, security, replica_dir(settings))
            if settings.api_port
            else None
        )
        # Webhooks for revocations (off without a webhook file); a bad file fails here too.
        self.webhooks = (
            WebhookDispatcher(
                load_webhooks(settings.webhooks),
                bootstrap=settings.bootstrap_servers,
                group_id=settings.group_id,
                revocations_topic=settings.topic_revocations,
                deadletter_topic=settings.topic_deadletter,
                output_format=settings.output_format,
                registry_url=settings.schema_registry_url,
                security=security,
            )
            if settings.webhooks is not None
            else None
        )
        #: awaited first when the worker stops (sends the "leaving" heartbeat)
        self.before_stop: Callable[[], Awaitable[Any]] | None = None

    async def on_start(self) -> None:
        s = self.settings
        await ensure_topics(
            s.bootstrap_servers,
            [*s.input_topics, *s.output_topics],
            s.partitions,
            compacted=[s.topic_changelog],
            security=self.security,
        )
        await ensure_topics(
            s.bootstrap_servers, [], 1, compacted=[s.topic_bundles], security=self.security
        )
        await ensure_topics(s.bootstrap_servers, [WORKERS_TOPIC], 1, security=self.security)
        await self.runner.start()
        self._task = asyncio.create_task(self._run())
        if self.api is not None:
            await self.api.start()
        if self.webhooks is not None:
            await self.webhooks.start()
        self._freezer = asyncio.create_task(self._freeze_startup_heap())

    async def _freeze_startup_heap(self) -> None:
        """Once the worker is ready, hide what startup built (modules, the compiled bundle,
        clients: ≈100k objects that live as long as the process) from the garbage collector:
        otherwise each full collection walks them all with the event loop stopped, tens to
        hundreds of ms, which is the check API's p99 (docs/performance.md)."""
        await self.runner.ready.wait()
        gc.freeze()
        metrics.GC_FROZEN_OBJECTS.set(gc.get_freeze_count())

    async def _run(self) -> None:
        try:
            await self.runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("pipeline loop crashed; stopping the worker")
            await self.crash_and_stop()

    async def crash_and_stop(self) -> None:
        os._exit(70)  # let the supervisor restart us; state is safe (see runner docstring)

    async def on_stop(self) -> None:
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.api is not None:
            await self.api.stop()
        if self.before_stop is not None:  # the leaving heartbeat; a failure must not block stop
            try:
                await asyncio.wait_for(self.before_stop(), timeout=2.0)
            except Exception:
                self.log.warning("could not announce that this worker leaves", exc_info=True)
        await self.runner.stop()
        for task in (self._task, self._freezer):
            if task is not None:
                task.cancel()


def advertised_host(bind: str) -> str:
    """The host name in the worker's own URLs: the bound address, or the machine's name when
    it binds every interface."""
    return socket.gethostname() if bind in ("0.0.0.0", "::", "") else bind


def create_app(settings: Settings) -> faust.App:
    """The worker's faust App; raises ``PolicyCompileError`` or ``KafkaSecurityError``."""
    security = KafkaSecurity.from_settings(settings)
    pipeline = build_pipeline(settings)
    worker_id = f"{socket.gethostname()}:{settings.web_port}"
    # faust's consumer group is the app id: one per worker, so every worker sees every heartbeat
    # (and it never collides with the pipeline's group ``settings.group_id``).
    app = faust.App(
        f"{settings.group_id}-fleet-{worker_id.replace(':', '-')}",
        broker=settings.faust_broker,
        broker_credentials=security.faust_credentials(),
        store="memory://",
        web_port=settings.web_port,
        # faust's own files (it keeps none for memory:// stores, but creates the folder)
        datadir=str(faust_dir(settings)),
        web_bind=settings.web_host,
        web_host=advertised_host(settings.web_host),
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        topic_disable_leader=True,
        topic_partitions=1,
        autodiscover=False,
    )
    service = PipelineService(settings, pipeline, security)
    app.service(service)  # type: ignore[arg-type]  # faust accepts a started-later instance
    fleet = Fleet(HEARTBEAT_SECONDS)
    workers_topic = app.topic(WORKERS_TOPIC, value_serializer="raw", partitions=1)

    @app.agent(workers_topic)
    async def track_workers(stream: Any) -> None:
        async for raw in stream:
            try:
                fleet.observe(orjson.loads(raw))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                metrics.DEADLETTERS.labels("heartbeat").inc()

    def pending_bundle() -> dict[str, Any] | None:
        pending = service.runner.pending
        return pending.report() if pending is not None else None

    def beat(leaving: bool = False) -> bytes:
        return orjson.dumps(
            {
                "worker_id": worker_id,
                "policy_digest": pipeline.engine.digest,
                "partitions": [] if leaving else sorted(service.runner.stores),
                "reevaluating_partitions": service.runner.reevaluating,
                "pending_bundle": pending_bundle(),
                "group_id": settings.group_id,
                "ready": service.runner.ready.is_set() and not leaving,
                "leaving": leaving,
                "at": int(time.time() * 1000),
            }
        )

    @app.timer(HEARTBEAT_SECONDS)
    async def heartbeat() -> None:
        await workers_topic.send(value=beat())

    service.before_stop = lambda: workers_topic.send(value=beat(leaving=True))

    @app.page("/metrics")
    async def prometheus(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        """Readiness: 200 only while the worker can process input (docs/operations.md)."""
        ready = service.runner.ready.is_set()
        reasons = service.runner.outages.reasons()
        if not ready:
            reasons.insert(0, "waiting for the first partition assignment to be restored")
        body = {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "ready": ready,
            "partitions": sorted(service.runner.stores),
            "policy_digest": pipeline.engine.digest,
            "reevaluating_partitions": service.runner.reevaluating,
            "pending_bundle": pending_bundle(),
        }
        return web.json(body, status=503 if reasons else 200)

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        """Liveness: the process answers. An outage is not a reason to restart it."""
        return web.json({"status": "alive"})

    @app.page("/_cerbos/health")
    async def cerbos_health(web: Any, request: Any) -> Any:
        return web.json({"status": "SERVING"})

    @app.page("/workers")
    async def workers(web: Any, request: Any) -> Any:
        return web.json({"workers": fleet.live(int(time.time() * 1000))})

    return app
