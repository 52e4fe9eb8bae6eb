"""Counting a restored partition's subjects and active grants, after it is ready.

The counts feed two gauges (``vigil_state_subjects``, ``vigil_active_grants``) and nothing else.
Counting grants parses every grant state (one JSON document per subject with grants): measured,
that was as much CPU as the changelog replay itself, so a restore no longer waits for it. The
runner takes a snapshot of the store when the restore ends, adds every later batch's deltas to
zero, and counts in small steps between batches: the keys come from the live store (keys are
never deleted, so every key of the snapshot is among them), their values from the snapshot (a key
written only after it reads as absent; a value changed after it reads as it was). Snapshot count
plus deltas is the exact figure once the count is done; until then the gauges show the deltas.
"""

from __future__ import annotations

from streams.state.store import GRANT_PREFIX, SIGNAL_PREFIX, PartitionStore, StoreView
from streams.state.subject import count_active_grants

#: Keys read per step: signal states (an existence check each), then grant states (parsed).
KEYS_PER_STEP = 5_000


class StateCount:
    """A resumable count of one store as of its snapshot: subjects first, then active grants."""

    def __init__(self, store: PartitionStore, view: StoreView) -> None:
        self.store = store
        self.view: StoreView | None = view
        self.subjects = 0
        self.grants = 0
        self._prefix = SIGNAL_PREFIX
        self._after: bytes | None = None

    def step(self) -> bool:
        """Count one chunk; True when the count is complete (the snapshot is released then)."""
        view = self.view
        assert view is not None
        keys = self.store.keys_after(self._prefix, self._after, KEYS_PER_STEP)
        values = [v for v in map(view.get, keys) if v is not None]
        if self._prefix == SIGNAL_PREFIX:
            self.subjects += len(values)
        else:
            self.grants += count_active_grants(values)
        if len(keys) == KEYS_PER_STEP:
            self._after = keys[-1]
            return False
        if self._prefix == SIGNAL_PREFIX:
            self._prefix, self._after = GRANT_PREFIX, None
            return False
        self.view = None
        return True
