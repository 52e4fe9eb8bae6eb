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
