"""Codec exceptions, kept apart so every codec module can raise them without import cycles."""

from __future__ import annotations


class DecodeError(ValueError):
    """The bytes are not a valid record of the expected kind: the message goes to dead-letter.

    ``reason`` is a short human-readable sentence, stored verbatim in the DeadLetter record.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EncodeError(ValueError):
    """A record in JSON shape cannot be encoded (missing field, wrong type): a programming error."""


class TransientError(Exception):
    """A dependency (schema registry, broker) is unavailable: the input is fine, try it again later.

    Never a reason to dead-letter a record or to stop a worker: the pipeline runner backs off and
    retries the same batch (docs/operations.md, "Outages"). ``dependency`` is a short, bounded
    name used as a metric label and in ``/healthz``.
    """

    dependency = "dependency"
