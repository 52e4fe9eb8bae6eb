"""Counting a restored partition's subjects and active grants, after it is ready.

The counts feed two gauges (``vigil_state_subjects``, ``vigil_active_grants``) and nothing else.
Counting grants parses every grant state (one JSON document per subject with grants): measured,
that was as much CPU as the changelog replay itself, so a restore no longer waits for it. The
runner takes a snapshot of the store when the restore ends, adds every later batch's deltas to
zero, and counts in small steps between batches. Snapshot count plus deltas is the exact figure
once the count is done; until then the gauges show the deltas.

The count reads the live store in key order, keys only for the subjects and keys with values
(one iterator, no point read per key) for the grants. The live store and the snapshot differ
only in the keys written since the snapshot: the store reports every write (``on_write``) and
the count notes the written keys it has not passed yet; for those alone it reads the snapshot,
so a key created since is not counted, one deleted since still is, and a changed grant state
counts as it was. (rocksdict's snapshot *iterators* read the live database, measured, so the
snapshot serves point reads only; a point read per key was the count's largest cost: at 1.1M
subjects it had not finished 300 s after ready, docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.state.store import GRANT_PREFIX, SIGNAL_PREFIX, PartitionStore, StoreView
from streams.state.subject import count_active_grants

#: Keys read per step: signal state keys (counted), then grant states (parsed).
KEYS_PER_STEP = 5_000


class StateCount:
    """A resumable count of one store as of its snapshot: subjects first, then active grants.
    From its creation until the count is done it watches the store's writes."""

    def __init__(self, store: PartitionStore, view: StoreView) -> None:
        self.store = store
        self.view: StoreView | None = view
        self.subjects = 0
        self.grants = 0
        self._prefix = SIGNAL_PREFIX
        self._after: bytes | None = None
        self._written: set[bytes] = set()  # keys written since the snapshot, not counted yet
        store.on_write = self._note

    def _note(self, puts: Mapping[bytes, bytes | None]) -> None:
        """A write to the store: remember the keys the count has still to pass."""
        prefix, after = self._prefix, self._after
        for key in puts:
            if key.startswith(prefix):
                if after is None or key > after:
                    self._written.add(key)
            elif prefix == SIGNAL_PREFIX and key.startswith(GRANT_PREFIX):
                self._written.add(key)

    def step(self) -> bool:
        """Count one chunk; True when the count is complete (the snapshot is released then)."""
        view = self.view
        assert view is not None
        prefix = self._prefix
        if prefix == SIGNAL_PREFIX:
            keys = self.store.keys_after(prefix, self._after, KEYS_PER_STEP)
            items: list[tuple[bytes, bytes]] = []
        else:
            items = self.store.items_after(prefix, self._after, KEYS_PER_STEP)
            keys = [k for k, _ in items]
        full = len(keys) == KEYS_PER_STEP
        # written keys this chunk passes (to the end of the prefix when it is the last chunk)
        passed = {k for k in self._written if k.startswith(prefix) and (not full or k <= keys[-1])}
        self._written -= passed
        then = [v for v in map(view.get, passed) if v is not None]  # as in the snapshot
        if prefix == SIGNAL_PREFIX:
            live = len(keys) - sum(1 for k in keys if k in passed) if passed else len(keys)
            self.subjects += live + len(then)
        else:
            live_states = (
                [v for k, v in items if k not in passed] if passed else [v for _, v in items]
            )
            self.grants += count_active_grants(live_states) + count_active_grants(then)
        if full:
            self._after = keys[-1]
            return False
        if prefix == SIGNAL_PREFIX:
            self._prefix, self._after = GRANT_PREFIX, None
            return False
        self.close()
        return True

    def close(self) -> None:
        """Stop watching the store and release the snapshot."""
        if self.store.on_write == self._note:
            self.store.on_write = None
        self.view = None
        self._written.clear()
