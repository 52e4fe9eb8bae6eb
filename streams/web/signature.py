"""Webhook signatures, as the Standard Webhooks specification (standardwebhooks.com) defines them.

Headers on every delivery attempt:

* ``webhook-id``: the revocation id (the same on every retry and on a duplicate delivery, so a
  receiver deduplicates by it);
* ``webhook-timestamp``: Unix seconds when the attempt was signed;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``.

The secret is ``whsec_`` + base64 of the key (24 to 64 random bytes). A receiver recomputes the
HMAC over the raw body, compares in constant time, and rejects a timestamp more than
``tolerance`` seconds from its clock (a replayed request) and an id it has seen (a retry or a
duplicate). Any Standard Webhooks library (e.g. ``standardwebhooks``, ``svix``) verifies these.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookSignatureError(ValueError):
    """A delivery that must be rejected (bad or missing signature, stale timestamp)."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; raises ``ValueError`` on any other form."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret's key is 24 to 64 bytes")
    return key


def _sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def sign(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of one delivery attempt."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": _sign(secret_key(secret), msg_id, ts, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> str:
    """Check a delivery; return its ``webhook-id``, or raise ``WebhookSignatureError``.

    ``headers`` is looked up case-insensitively by the names above (aiohttp's and most
    frameworks' header mappings are). Deduplicating by the returned id is the receiver's job.
    """
    msg_id = headers.get("webhook-id")
    raw_ts = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not raw_ts or not signatures:
        raise WebhookSignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        ts = int(raw_ts)
    except ValueError:
        raise WebhookSignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise WebhookSignatureError("webhook-timestamp is outside the tolerance (a replay?)")
    expected = _sign(secret_key(secret), msg_id, ts, body)
    # the header may carry several space-separated signatures (key rotation)
    if not any(hmac.compare_digest(expected, given) for given in signatures.split(" ")):
        raise WebhookSignatureError("no valid signature")
    return msg_id
