"""A transmitter's signing keys: a JWKS from a local file or an http(s) URL.

Keys are selected by ``kid``. An unknown ``kid`` triggers one refetch (the transmitter may
have rotated), at most once per ``min_refetch_seconds``, so a stream of SETs with made-up kids
cannot make us hammer the transmitter. Only public asymmetric keys are kept: a JWKS that
publishes a shared secret (``oct``) key cannot make an HMAC-signed SET acceptable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from joserfc.jwk import KeySet

from streams import metrics

log = logging.getLogger(__name__)
MAX_JWKS_BYTES = 512 * 1024


class KeyNotFound(LookupError):
    pass


class KeySource:
    def __init__(
        self, uri: str, *, min_refetch_seconds: float = 30.0, timeout_s: float = 5.0
    ) -> None:
        self.uri = uri
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout_s = timeout_s
        self._keys: KeySet | None = None
        self._fetched_at = -1e18
        self._lock = asyncio.Lock()

    async def _read(self) -> dict[str, Any]:
        if self.uri.startswith(("http://", "https://")):
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self.uri, headers={"Accept": "application/json"}) as resp,
            ):
                if resp.status != 200:
                    raise OSError(f"GET {self.uri}: HTTP {resp.status}")
                body = await resp.content.read(MAX_JWKS_BYTES + 1)
        else:
            body = await asyncio.to_thread(Path(self.uri).read_bytes)
        if len(body) > MAX_JWKS_BYTES:
            raise OSError(f"{self.uri}: JWKS larger than {MAX_JWKS_BYTES} bytes")
        data = orjson.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError(f"{self.uri}: not a JWKS (no 'keys' list)")
        return data

    async def refresh(self) -> bool:
        """Fetch now unless a fetch happened within ``min_refetch_seconds``; True if fetched."""
        async with self._lock:
            if time.monotonic() - self._fetched_at < self.min_refetch_seconds:
                return False
            self._fetched_at = time.monotonic()
            try:
                data = await self._read()
                public = [
                    k
                    for k in data["keys"]
                    if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP")
                ]
                public = [{k: v for k, v in key.items() if k != "d"} for key in public]
                self._keys = KeySet.import_key_set({"keys": public})
            except Exception as exc:  # unreachable, not JSON, bad key: keep the keys we had
                metrics.SSF_JWKS_FETCHES.labels("error").inc()
                log.warning("SSF: JWKS %s could not be loaded: %s", self.uri, exc)
                return False
            metrics.SSF_JWKS_FETCHES.labels("ok").inc()
            return True

    def _find(self, kid: str | None) -> Any:
        if self._keys is None:
            return None
        keys = self._keys.keys
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        for key in keys:
            if key.kid == kid:
                return key
        return None

    async def key(self, kid: str | None) -> Any:
        """The key for ``kid`` (without a kid: the only key); ``KeyNotFound`` if none."""
        found = self._find(kid)
        if found is None:
            await self.refresh()
            found = self._find(kid)
        if found is None:
            what = f"kid {kid!r}" if kid is not None else "a key (no kid, and not exactly one key)"
            raise KeyNotFound(f"no {what} in the JWKS at {self.uri}")
        return found
