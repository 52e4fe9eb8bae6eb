"""Event-time parsing shared by signal and grant validation: RFC 3339 text or epoch milliseconds.

Every parsed time is checked against the one valid range in ``streams.models.limits``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from streams.models.limits import check_time_ms, short

# Epoch-ms below this are almost surely seconds sent by mistake (year 2001 in ms).
_MIN_PLAUSIBLE_MS = 1_000_000_000_000


def to_epoch_ms(value: object) -> int:
    """Return epoch milliseconds for an RFC 3339 string or an epoch-ms number; raise ValueError
    (also for a time outside the valid range, see ``streams.models.limits``)."""
    if isinstance(value, bool):
        raise ValueError("a time must be RFC 3339 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a time")
        ms = int(value)
        if ms < _MIN_PLAUSIBLE_MS:
            raise ValueError(
                f"epoch time {short(value)} looks like seconds; send epoch milliseconds"
            )
        return check_time_ms(ms, value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return to_epoch_ms(int(text))
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{short(value)} is not an RFC 3339 time") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{short(value)} has no time zone offset (RFC 3339 needs one)")
        try:
            ms = int(parsed.timestamp() * 1000)
        except (OverflowError, ValueError):
            raise ValueError(f"{short(value)} is not a representable time") from None
        return check_time_ms(ms, value)
    raise ValueError(
        f"a time must be RFC 3339 text or epoch milliseconds, got {type(value).__name__}"
    )


def to_rfc3339(ms: int) -> str:
    """Format epoch milliseconds as RFC 3339 UTC text (what CEL's timestamp() accepts)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
