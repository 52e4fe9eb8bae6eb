"""The Cerbos HTTP API of a worker (aiohttp): routes, auth, body limits, errors as Cerbos writes them.

HTTP plumbing only: what a check or a plan means is `streams.processing.check.LiveChecker`.
Routes, as the stock PDP serves them:

* ``POST /api/check/resources`` and ``POST /api/plan/resources``: the body is JSON whatever the
  ``Content-Type`` says (SDKs send ``text/plain``);
* ``GET /_cerbos/health`` (``?service=`` empty or ``cerbos.svc.v1.CerbosService``; another
  service is ``404 {"code": 5, "message": "unknown service"}``), no token needed;
* ``GET /api/server_info``;
* ``GET /api/revocations/stream``: revocations as server-sent events
  (`streams.web.revocation_stream`).

Every error is ``{"code": <gRPC code>, "message": ...}`` with the HTTP status grpc-gateway gives
that code; an unexpected failure is logged with its traceback and answered ``500 {"code": 13}``
without one. Each request is handled on its own: a bad one cannot affect another.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from streams import metrics
from streams.policy.api import RequestError, new_call_id
from streams.processing.check import LiveChecker
from streams.web.audit import AuditPublisher
from streams.web.revocation_stream import RevocationStreams, StreamRequestError
from streams.web.tokens import ApiTokens, Route
from streams.web.watch import GrantPublisher

log = logging.getLogger(__name__)

# gRPC status codes and the HTTP status grpc-gateway maps them to.
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 3, 5, 7, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16
HTTP_STATUS = {
    INVALID_ARGUMENT: 400,
    NOT_FOUND: 404,
    PERMISSION_DENIED: 403,
    RESOURCE_EXHAUSTED: 413,
    UNIMPLEMENTED: 501,
    INTERNAL: 500,
    UNAVAILABLE: 503,
    UNAUTHENTICATED: 401,
}
_AUTH_CODE = {401: UNAUTHENTICATED, 403: PERMISSION_DENIED}
HEALTH_SERVICES = frozenset({"", "cerbos.svc.v1.CerbosService"})
_ROUTES: dict[str, Route | str] = {
    "/api/check/resources": "check",
    "/api/plan/resources": "plan",
    "/api/server_info": "server_info",
    "/_cerbos/health": "health",
    "/api/revocations/stream": "revocations",
}
_GET_ROUTES = frozenset({"health", "server_info", "revocations"})


def _vigil_version() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "0.0.0"


def error(code: int, message: str) -> web.Response:
    return json_response({"code": code, "message": message}, HTTP_STATUS.get(code, 500))


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def tls_context(certfile: Path, keyfile: Path, client_cafile: Path | None) -> ssl.SSLContext:
    """HTTPS for the API; with ``client_cafile``, a client certificate it signs is required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certfile), str(keyfile))
    if client_cafile is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(client_cafile))
    return ctx


class ApiExtension(Protocol):
    """More routes on the API listener (e.g. the Shared Signals push endpoint): path ->
    (metric route label, handler). Such a handler answers its own errors and auth."""

    def routes(
        self,
    ) -> dict[str, tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]: ...


class CheckApi:
    """The API's aiohttp application and its server."""

    def __init__(
        self,
        checker: LiveChecker,
        *,
        ready: Callable[[], bool],
        audit: AuditPublisher | None = None,
        grants: GrantPublisher | None = None,
        tokens: ApiTokens | None = None,
        revocations: RevocationStreams | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
        extensions: Sequence[ApiExtension] = (),
    ) -> None:
        self.checker = checker
        self.audit = audit
        self.grants = grants
        self.tokens = tokens
        self.revocations = revocations
        self.ready = ready
        self.max_body_bytes = max_body_bytes
        self.extensions = extensions
        self._extension_routes: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._guard])
        app.router.add_route("*", "/api/check/resources", self._check)
        app.router.add_route("*", "/api/plan/resources", self._plan)
        app.router.add_route("*", "/api/server_info", self._server_info)
        app.router.add_route("*", "/_cerbos/health", self._health)
        app.router.add_route("*", "/api/revocations/stream", self._revocations)
        for extension in self.extensions:
            for path, (label, handler) in extension.routes().items():
                app.router.add_route("*", path, handler)
                self._extension_routes[path] = label
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        """Bind and serve; raises ``OSError`` if the address is taken (the worker then fails)."""
        self._runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- plumbing shared by every route ---------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = _ROUTES.get(request.path) or self._extension_routes.get(request.path, "other")
        started = time.perf_counter()
        if request.path in self._extension_routes:  # own auth, errors and body limits
            response = await handler(request)
        else:
            response = await self._answer(request, handler, route)
        metrics.API_REQUESTS.labels(route, str(response.status)).inc()
        if route != "revocations":  # a stream lasts as long as its client stays
            metrics.API_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        route: str,
    ) -> web.StreamResponse:
        if route == "other":
            return error(NOT_FOUND, "Not Found")
        wanted = "GET" if route in _GET_ROUTES else "POST"
        if request.method != wanted:
            return error(UNIMPLEMENTED, "Method Not Allowed")
        if self.tokens is not None and route != "health":
            denied = self.tokens.authorize(request.headers.get("Authorization"), route)  # type: ignore[arg-type]
            if denied is not None:
                status, message = denied
                return error(_AUTH_CODE[status], message)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error(RESOURCE_EXHAUSTED, f"request body exceeds {self.max_body_bytes} bytes")
        except RequestError as exc:
            return json_response(exc.body(), HTTP_STATUS.get(exc.code, 400))
        except Exception:  # a bug: logged with its traceback, answered without it
            log.exception("check API: %s %s failed", request.method, request.path)
            return error(INTERNAL, "internal error")

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()  # raises HTTPRequestEntityTooLarge over the limit
        if not raw.strip():
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"invalid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError("request must be a JSON object")
        return body

    # -- routes -----------------------------------------------------------------------------

    async def _check(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if not self.ready():
            return error(UNAVAILABLE, "worker is not ready: signal state still loading")
        outcome = self.checker.check(body, new_call_id())
        if self.audit is not None:
            self.audit.offer(outcome.decisions)
        if outcome.grants:
            if self.grants is None:
                return error(UNIMPLEMENTED, "vigil.watch is not available on this server")
            try:
                await self.grants.publish(outcome.subject, outcome.grants)
            except Exception as exc:  # Kafka down or slow: the grant is not watched, say so
                log.error("watched check: grant events not recorded: %r", exc)
                return error(UNAVAILABLE, "vigil.watch: the grant could not be recorded; retry")
        return json_response(outcome.response)

    async def _plan(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if not self.ready():
            return error(UNAVAILABLE, "worker is not ready: signal state still loading")
        return json_response(self.checker.plan(body, new_call_id()))

    async def _revocations(self, request: web.Request) -> web.StreamResponse:
        streams = self.revocations
        if streams is None:
            return error(UNIMPLEMENTED, "revocation streams are not available on this server")
        try:
            flt, cursor = streams.parse(request)
        except StreamRequestError as exc:
            return error(INVALID_ARGUMENT, str(exc))
        if not streams.ready():
            return error(UNAVAILABLE, "worker is not ready: revocations still loading")
        if streams.feed.streams >= streams.max_streams:
            metrics.REVOCATION_STREAM_REJECTED.inc()
            return json_response(
                {
                    "code": RESOURCE_EXHAUSTED,
                    "message": f"too many revocation streams (limit {streams.max_streams})",
                },
                429,
            )
        return await streams.serve(request, flt, cursor)

    async def _server_info(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": _vigil_version()})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("service", "") not in HEALTH_SERVICES:
            return error(NOT_FOUND, "unknown service")
        if not self.ready():
            return json_response({"status": "NOT_SERVING"}, 503)
        return json_response({"status": "SERVING"})
