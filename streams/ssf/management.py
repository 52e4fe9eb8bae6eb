"""SSF 1.0 stream management, as a receiver: discover a transmitter
(``/.well-known/ssf-configuration``), read our stream, create it or update it to what the config
asks for, read its status, and request a verification event whose ``state`` must come back.

Used by the worker at start for transmitters with ``manage_stream: true`` and by
``vigil ssf status``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from streams.ssf.config import Transmitter
from streams.ssf.events import EVENT_TYPES, STREAM_EVENTS

PUSH_METHOD = "urn:ietf:rfc:8935"
POLL_METHOD = "urn:ietf:rfc:8936"
#: what Vigil asks for by default: every subject event it maps
DEFAULT_EVENTS = sorted(uri for uri in EVENT_TYPES if uri not in STREAM_EVENTS)


class StreamError(RuntimeError):
    pass


def well_known_url(issuer: str) -> str:
    """SSF 1.0 section 7.2: the well-known path goes before the issuer's own path."""
    parts = urlsplit(issuer)
    path = "/.well-known/ssf-configuration" + parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class StreamClient:
    def __init__(self, transmitter: Transmitter, session: aiohttp.ClientSession) -> None:
        self.transmitter = transmitter
        self.session = session
        self.metadata: dict[str, Any] = {}

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.transmitter.management_authorization:
            headers["Authorization"] = self.transmitter.management_authorization
        return headers

    async def _call(
        self, method: str, url: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.request(
            method, url, json=json, params=params, headers=self._headers()
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise StreamError(f"{method} {url}: HTTP {resp.status} {raw[:300]!r}")
            return resp.status, (await resp.json(content_type=None)) if raw else None

    def _endpoint(self, name: str) -> str:
        url = self.metadata.get(name)
        if not isinstance(url, str):
            raise StreamError(f"transmitter {self.transmitter.name} has no {name}")
        return url

    async def discover(self) -> dict[str, Any]:
        _, metadata = await self._call("GET", well_known_url(self.transmitter.issuer))
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.transmitter.issuer:
            raise StreamError(
                f"{well_known_url(self.transmitter.issuer)}: issuer is not "
                f"{self.transmitter.issuer!r}"
            )
        self.metadata = metadata
        return metadata

    def _check(self, stream: Any) -> dict[str, Any]:
        if not isinstance(stream, dict) or stream.get("iss") != self.transmitter.issuer:
            raise StreamError("stream configuration with another or no 'iss'")
        return stream

    def wanted(self) -> dict[str, Any]:
        """The receiver-supplied stream properties the config asks for."""
        t = self.transmitter
        delivery: dict[str, Any] = {"method": POLL_METHOD if t.delivery == "poll" else PUSH_METHOD}
        if t.delivery == "push":
            delivery["endpoint_url"] = t.push_endpoint_url
            if t.push_authorization:
                delivery["authorization_header"] = t.push_authorization
        return {
            "delivery": delivery,
            "events_requested": t.events_requested or DEFAULT_EVENTS,
            "description": "Vigil continuous authorization",
        }

    async def streams(self) -> list[dict[str, Any]]:
        _, found = await self._call("GET", self._endpoint("configuration_endpoint"))
        found = found if isinstance(found, list) else [found]
        return [self._check(s) for s in found if s]

    async def ensure(self) -> dict[str, Any]:
        """Our stream: created if there is none, updated where it differs from the config."""
        wanted = self.wanted()
        existing = await self.streams()
        if not existing:
            _, created = await self._call(
                "POST", self._endpoint("configuration_endpoint"), json=wanted
            )
            return self._check(created)
        stream = existing[0]
        changes = {k: v for k, v in wanted.items() if k != "delivery" and stream.get(k) != v}
        if stream.get("delivery", {}).get("method") != wanted["delivery"]["method"] or (
            stream.get("delivery", {}).get("endpoint_url") != wanted["delivery"].get("endpoint_url")
        ):
            changes["delivery"] = wanted["delivery"]
        if not changes:
            return stream
        _, updated = await self._call(
            "PATCH",
            self._endpoint("configuration_endpoint"),
            json={"stream_id": stream["stream_id"], **changes},
        )
        return self._check(updated)

    async def status(self, stream_id: str) -> dict[str, Any]:
        _, found = await self._call(
            "GET", self._endpoint("status_endpoint"), params={"stream_id": stream_id}
        )
        return found if isinstance(found, dict) else {}

    async def request_verification(self, stream_id: str) -> str:
        """Ask for a verification event; returns the ``state`` it must carry."""
        state = secrets.token_urlsafe(16)
        await self._call(
            "POST",
            self._endpoint("verification_endpoint"),
            json={"stream_id": stream_id, "state": state},
        )
        return state
