"""`CheckClient`: a Cerbos CheckResources call carrying Vigil's request context.

The Cerbos Python SDK (0.16) has no ``requestContext``; this client sends the annotations Vigil
reads (``vigil.session_id``, ``vigil.device_id``, ``vigil.watch``, ``vigil.principal_type``) and
returns the Cerbos JSON answer unchanged, with a helper to read effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson


@dataclass(frozen=True, slots=True)
class Watch:
    """Keep the allowed actions under watch as grant ``grant_id`` for ``ttl_seconds``; with
    several resources, resource *i* becomes grant ``<grant_id>/<i>``."""

    grant_id: str
    ttl_seconds: float = 900


class ApiError(Exception):
    """A non-200 answer: HTTP status and the Cerbos error body ``{code, message}``."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.code = body.get("code") if isinstance(body, dict) else None
        self.message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {self.message}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    raw: dict[str, Any]

    @property
    def call_id(self) -> str:
        return str(self.raw.get("cerbosCallId", ""))

    def effect(self, resource_id: str, action: str) -> str | None:
        for result in self.raw.get("results", []):
            if result["resource"]["id"] == resource_id:
                return result["actions"].get(action)  # type: ignore[no-any-return]
        return None

    def allowed(self, resource_id: str, action: str) -> bool:
        return self.effect(resource_id, action) == "EFFECT_ALLOW"


class CheckClient:
    """``async with CheckClient("http://127.0.0.1:3592", token=...) as vigil: ...``"""

    def __init__(self, url: str, *, token: str | None = None, timeout_seconds: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CheckClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def check_resources(
        self,
        principal: dict[str, Any],
        resources: list[dict[str, Any]],
        *,
        session_id: str | None = None,
        device_id: str | None = None,
        watch: Watch | None = None,
        principal_type: str | None = None,
        request_id: str | None = None,
        include_meta: bool = False,
    ) -> CheckResult:
        """``resources``: ``[{"resource": {"kind", "id", "attr"...}, "actions": [...]}]``, as
        in the Cerbos API. Raises `ApiError` for any answer but 200."""
        annotations: dict[str, Any] = {}
        if session_id is not None:
            annotations["vigil.session_id"] = session_id
        if device_id is not None:
            annotations["vigil.device_id"] = device_id
        if principal_type is not None:
            annotations["vigil.principal_type"] = principal_type
        if watch is not None:
            annotations["vigil.watch"] = {
                "grant_id": watch.grant_id,
                "ttl_seconds": watch.ttl_seconds,
            }
        body: dict[str, Any] = {"principal": principal, "resources": resources}
        if annotations:
            body["requestContext"] = {"annotations": annotations}
        if request_id is not None:
            body["requestId"] = request_id
        if include_meta:
            body["includeMeta"] = True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        async with self._session.post(
            f"{self.url}/api/check/resources", data=orjson.dumps(body), headers=self._headers
        ) as response:
            raw = await response.read()
            try:
                answer = orjson.loads(raw)
            except orjson.JSONDecodeError:
                answer = raw.decode(errors="replace")
            if response.status != 200:
                raise ApiError(response.status, answer)
            return CheckResult(answer)

    async def is_allowed(
        self,
        action: str,
        principal: dict[str, Any],
        resource: dict[str, Any],
        **context: Any,
    ) -> bool:
        """One action on one resource; ``context`` as for `check_resources`."""
        result = await self.check_resources(
            principal, [{"resource": resource, "actions": [action]}], **context
        )
        return result.allowed(str(resource["id"]), action)
