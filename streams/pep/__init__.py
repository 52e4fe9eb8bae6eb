"""A small Python PEP helper for Vigil (docs/check-api.md, "PEP helper").

* `CheckClient`: CheckResources with Vigil's context (session, device, watched grants) sent as
  ``requestContext.annotations``, which the Cerbos Python SDK 0.16 cannot send;
* `SseRevocationListener`: follows ``GET /api/revocations/stream`` on one or more workers and
  calls back once per revoked grant, reconnecting and resuming with ``Last-Event-ID``;
* `KafkaRevocationListener`: the same from ``authz.revocations`` with a consumer group, resuming
  from its committed offsets;
* `verify_webhook`: checks a webhook delivery's signature and timestamp.
"""

from streams.pep.client import ApiError, CheckClient, CheckResult, Watch
from streams.pep.listeners import KafkaRevocationListener, SseRevocationListener, StreamRefused
from streams.web.signature import WebhookSignatureError
from streams.web.signature import verify as verify_webhook

__all__ = [
    "ApiError",
    "CheckClient",
    "CheckResult",
    "KafkaRevocationListener",
    "SseRevocationListener",
    "StreamRefused",
    "Watch",
    "WebhookSignatureError",
    "verify_webhook",
]
