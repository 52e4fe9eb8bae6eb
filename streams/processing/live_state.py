"""What the running pipeline holds, read from Kafka for `vigil inventory --grants`.

* The state changelog (``vigil.state-changelog``) is the workers' RocksDB state, keyed by store
  key: the newest ``g:<subject>`` value holds the subject's active grants, the newest
  ``s:<subject>`` value its signal dimensions. It is read to its true end by the same
  `read_changelog` as ``vigil policy push --dry-run``: every partition, whichever worker owns
  it (or none), without joining the workers' consumer group.
* The decisions topic (``authz.decisions``) holds one Decision per checked action (cause
  ``check``): the resource kinds and actions callers have asked about. It is read to its end
  with the shared topic follower.

`signal_attributes_of` maps a signal dimension to the ``signals.*`` attributes it sets (the
inverse of `streams.state.subject`'s snapshots): an attribute no subject has a dimension for
was never sent by a producer, and every subject reads its safe default there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import orjson

from streams.kafka.follow import TopicFollower
from streams.kafka.security import PLAINTEXT, KafkaSecurity
from streams.models.live_state import GrantSeen, LiveState
from streams.processing.dryrun import read_changelog
from streams.state.store import GRANT_PREFIX, SIGNAL_PREFIX, PartitionStore

_RISK = ("signals.risk.level", "signals.risk.score")  # the risk model reads these dimensions too
_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "risk": _RISK,
    "account": ("signals.identity.account_status", *_RISK),
    "credential": (
        "signals.identity.credential_compromised",
        "signals.identity.credential_changed_at",
        "signals.identity.credential_change_required",
        *_RISK,
    ),
    "assurance": ("signals.identity.assurance_level", *_RISK),
    "network": ("signals.network", *_RISK),
    "identifier": ("signals.identity.identifier_status",),
    "sessions": ("signals.identity.sessions_revoked_at", "signals.session.revoked"),
    "token-claims": ("signals.token.claims",),
}
_PREFIXES: dict[str, tuple[str, ...]] = {
    "device:": ("signals.device.compliant", "signals.device.status"),
    "session:": ("signals.session.revoked",),
    "token:": ("signals.session.revoked",),
    "device-sessions:": ("signals.session.revoked",),
    "token-claims:": ("signals.token.claims",),
}


def signal_attributes_of(dimension: str) -> tuple[str, ...]:
    """The ``signals.*`` attributes (or attribute groups, e.g. ``signals.network``) a value in
    `dimension` sets; ``()`` for dimensions no policy can read (``session-seen``)."""
    found = _DIMENSIONS.get(dimension)
    if found is not None:
        return found
    for prefix, attrs in _PREFIXES.items():
        if dimension.startswith(prefix):
            return attrs
    return ()


class _CheckedActions(TopicFollower):
    """(resource kind, action) -> number of check decisions."""

    def __init__(self, registry_url: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry_url = registry_url
        self.counts: dict[tuple[str, str], int] = {}

    def _apply(self, record: Any) -> None:
        from streams.codecs import decode_any  # lazy: loads every schema on import

        if record.value is None:
            return
        _kind, decision = decode_any(record.value, list(record.headers or ()), self.registry_url)
        if (decision.get("cause") or {}).get("kind") != "check":
            return
        request = decision.get("request")
        if isinstance(request, str):
            request = orjson.loads(request)
        kind = str(((request or {}).get("resource") or {}).get("kind", ""))
        for entry in decision.get("actions") or ():
            key = (kind, str(entry.get("action", "")))
            self.counts[key] = self.counts.get(key, 0) + 1


async def _read(follower: TopicFollower, timeout: float) -> None:
    """Read every partition of the follower's topic to its end, then stop."""
    try:
        await follower.start(timeout=timeout)
    finally:
        with contextlib.suppress(Exception):
            await follower.stop()


def state_from_stores(stores: Iterable[PartitionStore]) -> LiveState:
    """Active grants and the signal attributes producers have set, from the state stores."""
    live = LiveState()
    sent: set[str] = set()
    subjects: set[bytes] = set()
    for key, raw in (
        kv for s in stores for p in (GRANT_PREFIX, SIGNAL_PREFIX) for kv in s.items(p)
    ):
        if key.startswith(GRANT_PREFIX):
            subject = key[len(GRANT_PREFIX) :].decode("utf-8", "replace")
            for grant_id, grant in sorted((orjson.loads(raw).get("grants") or {}).items()):
                live.grants.append(
                    GrantSeen(
                        subject=subject,
                        grant_id=str(grant_id),
                        kind=str((grant.get("resource") or {}).get("kind", "")),
                        actions=[str(a) for a in grant.get("actions") or ()],
                        on_behalf_of=[str(m) for m in grant.get("on_behalf_of") or ()],
                    )
                )
        elif key.startswith(SIGNAL_PREFIX):
            subjects.add(key[len(SIGNAL_PREFIX) :])
            for dimension in orjson.loads(raw).get("dims") or {}:
                sent.update(signal_attributes_of(dimension))
    live.sent_signals = frozenset(sent)
    live.subjects = len(subjects)
    return live


async def read_live_state(
    *,
    bootstrap: str,
    changelog_topic: str,
    decisions_topic: str | None,
    registry_url: str | None = None,
    security: KafkaSecurity = PLAINTEXT,
    timeout: float = 30.0,
) -> LiveState:
    """Read the state changelog (and, unless None, the decisions topic, waiting up to `timeout`
    seconds for it to exist) to their ends."""
    stores = await read_changelog(bootstrap, changelog_topic, security=security)
    live = state_from_stores(stores.values())
    if decisions_topic:
        checks = _CheckedActions(
            registry_url, bootstrap=bootstrap, topic=decisions_topic, security=security
        )
        await _read(checks, timeout)
        live.checks = checks.counts
    return live
