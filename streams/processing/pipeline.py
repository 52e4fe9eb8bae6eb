"""The batch pipeline for one partition: decode → validate → group by subject → apply to state →
re-evaluate affected grants → decisions, revocations and dead letters.

Pure with respect to Kafka: it takes ``InRecord``s and a ``PartitionStore`` and returns a
``BatchResult``; ``streams.processing.runner`` moves bytes between it and the broker. Each
subject's state is read once and written once per batch, whatever the number of its events.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from streams import metrics
from streams.codecs import DecodeError, InputDecoder, OutputEncoder, TransientError
from streams.models.grant import GrantEvent, validate_grant_event
from streams.models.limits import short
from streams.models.signal import Signal, SignalInvalid, check_signal_topic, validate_signal
from streams.models.subscription import (
    CASCADE,
    STATE,
    SUBSCRIBE,
    SubscriptionEvent,
    validate_subscription,
)
from streams.models.subscription import encode as encode_subscription
from streams.models.timeparse import to_rfc3339
from streams.policy import CheckMemo, PolicyEngine
from streams.processing.evaluation import (
    ALLOW,
    Cause,
    Evaluation,
    delegation_revocation,
    effective_request,
    evaluate_grant,
    expiry_outputs,
    lifecycle_decision,
)
from streams.processing.records import BatchResult, InRecord, OutRecord
from streams.state import delegation
from streams.state.risk import RiskModel
from streams.state.store import (
    GRANT_PREFIX,
    SIGNAL_PREFIX,
    PartitionStore,
    grant_key,
    signal_key,
)
from streams.state.subject import (
    Applied,
    GrantState,
    SignalState,
    apply_signal,
    ephemeral,
    expire_grants,
    grant_scoped,
    grant_state_empty,
    grants_seeing,
    named_entries,
    new_grant_state,
    new_signal_state,
    prune_entries,
    refused_by_pruning,
    subject_snapshot,
)

log = logging.getLogger(__name__)

_Item = Signal | GrantEvent | SubscriptionEvent
_JSON_HEADERS = [("content-type", b"application/json")]

# Revocation tombstones are kept this long after the grant would have expired (or was revoked).
TOMBSTONE_RETENTION_MS = 7 * 24 * 3600 * 1000
# Default slot of time re-evaluation (settings: time_reevaluation_seconds).
TIME_REEVALUATION_MS = 60_000
_NEVER = 1 << 62
# Dead-letter error kind (and metric label) of a signal dated beyond the allowed future skew.
EVENT_TIME_IN_FUTURE = "event-time-in-future"
DEFAULT_MAX_FUTURE_SKEW_MS = 300_000
# Default state retention (settings: state_retention_seconds): device and session entries no
# grant named for this long are pruned by the sweep.
DEFAULT_STATE_RETENTION_MS = 30 * 24 * 3600 * 1000
MAX_REASON_CHARS = 1000  # a dead-letter reason quotes input, never a megabyte of it


@dataclass(frozen=True, slots=True)
class Topics:
    signals: frozenset[str]
    grants: str
    decisions: str
    revocations: str
    deadletter: str
    # signal topic -> the roles it carries (identity, device, network, risk; several when one
    # topic is configured for several); a signal type of another role is dead-lettered. Empty:
    # no topic/type check.
    signal_roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # the internal topic of cross-subject grant dependencies (docs/delegation.md); None: grants
    # with an on_behalf_of chain see their members as subjects without signals
    subscriptions: str | None = None


class Pipeline:
    """Holds everything prepared once (decoders, encoders, policy engine, risk model)."""

    def __init__(
        self,
        topics: Topics,
        engine: PolicyEngine,
        risk: RiskModel,
        *,
        output_format: str = "avro",
        registry_url: str | None = None,
        time_reevaluation_ms: int = TIME_REEVALUATION_MS,
        max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
        state_retention_ms: int = DEFAULT_STATE_RETENTION_MS,
    ) -> None:
        if time_reevaluation_ms < 1:
            raise ValueError("time_reevaluation_ms must be positive")
        if state_retention_ms < 0:
            raise ValueError("state_retention_ms must not be negative")
        self.state_retention_ms = state_retention_ms  # 0: never prune
        self.topics = topics
        self.time_reevaluation_ms = time_reevaluation_ms
        self.max_future_skew_ms = max_future_skew_ms
        self.engine = engine
        self.risk = risk
        self._signal_decoder = InputDecoder("Signal", registry_url=registry_url)
        self._grant_decoder = InputDecoder("GrantEvent", registry_url=registry_url)
        fmt: Any = output_format
        self._decision_enc = OutputEncoder(
            "Decision", fmt, registry_url=registry_url, topic=topics.decisions
        )
        self._revocation_enc = OutputEncoder(
            "Revocation", fmt, registry_url=registry_url, topic=topics.revocations
        )
        self._deadletter_enc = OutputEncoder(
            "DeadLetter", fmt, registry_url=registry_url, topic=topics.deadletter
        )
        self._memo = engine.new_memo()  # replaced per batch (its now() is the batch clock)
        # what a chain member's signals look like before its state reached this partition
        self._no_signals = subject_snapshot(new_signal_state(), risk)
        self._tally = metrics.Tally()  # metric increments of the current batch

    # -- decoding -------------------------------------------------------------------------

    def _dead_letter(
        self, rec: InRecord, error: str, reason: str, now_ms: int, signal_type: str = "unknown"
    ) -> OutRecord:
        """``error`` is the bounded kind (metric label); ``reason`` is free text for people;
        ``signal_type`` is the type of a decoded and validated signal (a bounded label)."""
        self._tally.add(metrics.DEADLETTERS.labels(error))
        if rec.topic in self.topics.signals:
            self._tally.add(metrics.signals_by(rec.topic, signal_type, "dead-lettered"))
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[: MAX_REASON_CHARS - 3] + "..."
        reason = reason.encode("utf-8", "backslashreplace").decode()  # lone surrogates
        value = self._deadletter_enc.encode(
            {
                "reason": reason,
                "error": error,
                "topic": rec.topic,
                "partition": rec.partition,
                "offset": rec.offset,
                "key": rec.key,
                "value": rec.value,
                "received_at": now_ms,
            }
        )
        return OutRecord(self.topics.deadletter, rec.key, value, self._deadletter_enc.headers)

    def _decode(self, rec: InRecord) -> Signal | GrantEvent | SubscriptionEvent:
        """Decode and validate one record; raise DecodeError or SignalInvalid with a reason.
        A ``released`` event without a principal comes back with ``subject_key`` None."""
        if rec.topic == self.topics.subscriptions:
            return validate_subscription(rec.value)
        if rec.topic == self.topics.grants:
            return validate_grant_event(self._grant_decoder.decode(rec.value, rec.headers))
        signal = validate_signal(self._signal_decoder.decode(rec.value, rec.headers))
        roles = self.topics.signal_roles.get(rec.topic)
        if roles is not None:
            check_signal_topic(signal.type, rec.topic, roles)
        return signal

    def _key_mismatch(
        self, item: Signal | GrantEvent | SubscriptionEvent, rec: InRecord
    ) -> str | None:
        """Why the record's Kafka key is not its subject's key, or None when it is.

        Keys decide partitions: a record under another key sits on another partition than its
        subject's state and grants, and would change a state nobody reads (a signal that never
        revokes). A ``released`` event without a principal names its subject by the key alone,
        so its key must at least be a subject key."""
        key = item.subject_key
        if key is None:
            subject = rec.key.decode(errors="replace") if rec.key is not None else ""
            if rec.key is None or ":" not in subject:
                return (
                    f"record key {short(rec.key)} is not a subject key (type:id); a released grant "
                    "without a principal is applied to the subject its record key names"
                )
            assert isinstance(item, GrantEvent)  # a signal always names its subject
            item.subject_key = subject
            return None
        if rec.key is None:
            return f"record has no key; it must be keyed by its subject key {short(key)}"
        if rec.key != key.encode():
            return f"record key {short(rec.key)} does not match the subject key {short(key)}"
        return None

    # -- the batch --------------------------------------------------------------------------

    def process(
        self, records: Sequence[InRecord], store: PartitionStore, now_ms: int
    ) -> BatchResult:
        result = BatchResult()
        by_subject: dict[str, list[tuple[_Item, InRecord]]] = {}
        next_offsets = result.next_offsets
        for rec in records:
            if rec.offset >= next_offsets.get(rec.topic, 0):  # never backwards
                next_offsets[rec.topic] = rec.offset + 1
            item = self._admit(rec, result, now_ms)
            if item is not None:
                key = item.subject_key
                assert key is not None
                by_subject.setdefault(key, []).append((item, rec))
        if not by_subject:
            return result
        keys = list(by_subject)
        stored = store.get_many([signal_key(k.encode()) for k in keys])
        self._memo = self.engine.new_memo(now=datetime.fromtimestamp(now_ms / 1000, tz=UTC))
        for key, raw in zip(keys, stored, strict=True):
            items = by_subject[key]
            marks = _marks(result, self._tally)
            try:
                subject = _Subject(key, store, raw)
                self._process_subject(subject, items, result, now_ms)
                subject.collect(result.changed_states)
                if raw is None and subject.signals_dirty:
                    result.new_subjects += 1
            except TransientError:
                raise  # an outage, not a poison record: the runner retries the whole batch
            except Exception:  # a bug or a poison record must not stop the partition
                log.exception("processing subject %s failed; applying its records one by one", key)
                _rollback(result, self._tally, marks)
                self._process_one_by_one(key, store, raw, items, result, now_ms)
        return result

    def _admit(self, rec: InRecord, result: BatchResult, now_ms: int) -> _Item | None:
        """Decode, validate and check one record; dead-letter it (and return None) when it cannot
        be applied. Nothing raised by one record's bytes gets past this."""
        try:
            item = self._decode(rec)
        except DecodeError as exc:
            result.outputs.append(self._dead_letter(rec, "decode", str(exc), now_ms))
            return None
        except SignalInvalid as exc:
            result.outputs.append(self._dead_letter(rec, "validation", str(exc), now_ms))
            return None
        except TransientError:
            raise  # the registry is unreachable: the record is fine, the runner retries it
        except Exception as exc:  # a decoder or validator bug: this record alone is refused
            log.exception("decoding %s/%d@%d failed", rec.topic, rec.partition, rec.offset)
            reason = f"decoding failed: {type(exc).__name__}: {exc}"
            result.outputs.append(self._dead_letter(rec, "decode", reason, now_ms))
            return None
        mismatch = self._key_mismatch(item, rec)
        if mismatch is not None:
            result.outputs.append(
                self._dead_letter(rec, "key-mismatch", mismatch, now_ms, _signal_type(item))
            )
            return None
        if type(item) is Signal:
            future = self._future_dated(item, rec, now_ms)
            if future is not None:
                result.outputs.append(
                    self._dead_letter(rec, EVENT_TIME_IN_FUTURE, future, now_ms, item.type)
                )
                return None
        return item

    def _future_dated(self, signal: Signal, rec: InRecord, now_ms: int) -> str | None:
        """Why a signal is dated too far ahead, or None. The bound is the worker's clock plus the
        allowed skew, and also the record's Kafka timestamp plus the skew when the record has one
        (so replaying an old backlog judges each signal against when it was produced)."""
        skew = self.max_future_skew_ms
        event_time = signal.event_time
        if event_time <= rec.timestamp + skew and event_time <= now_ms + skew:
            return None
        if event_time > now_ms + skew:
            against, ref = "the worker's clock", now_ms
        else:
            if rec.timestamp < 0:
                return None  # no record timestamp (-1): only the clock applies
            against, ref = "the record's Kafka timestamp", rec.timestamp
        return (
            f"{EVENT_TIME_IN_FUTURE}: event_time {to_rfc3339(event_time)} is more than "
            f"{skew / 1000:g} s after {against} ({to_rfc3339(ref)})"
        )

    def _process_one_by_one(
        self,
        key: str,
        store: PartitionStore,
        raw: bytes | None,
        items: list[tuple[_Item, InRecord]],
        result: BatchResult,
        now_ms: int,
    ) -> None:
        """The slow path after a subject's batch failed: start again from its stored state and
        apply its records one at a time, each behind a savepoint, so that a record whose
        processing fails (or leaves a state that cannot be stored) is dead-lettered alone."""
        start = _marks(result, self._tally)
        try:
            subject = _Subject(key, store, raw)
            # Loaded (and expired grants published) once, before any savepoint, so that
            # restoring one never drops them.
            self._grant_state(subject, result, now_ms)
        except TransientError:
            raise
        except Exception as exc:  # the stored state itself is unreadable: nothing can apply
            log.exception("subject %s: stored state unreadable", key)
            self._refuse_all(
                items, f"subject state unreadable: {type(exc).__name__}: {exc}", result, now_ms
            )
            return
        for item, rec in items:
            saved = subject.savepoint()
            marks = _marks(result, self._tally)
            try:
                self._process_subject(subject, [(item, rec)], result, now_ms)
                subject.encode()  # what this record left must still be storable
            except TransientError:
                raise
            except Exception as exc:
                log.exception("record %s/%d@%d failed", rec.topic, rec.partition, rec.offset)
                _rollback(result, self._tally, marks)
                subject.restore(saved)
                reason = f"processing failed: {type(exc).__name__}: {exc}"
                result.outputs.append(
                    self._dead_letter(rec, "processing", reason, now_ms, _signal_type(item))
                )
        try:
            subject.collect(result.changed_states)
            if raw is None and subject.signals_dirty:
                result.new_subjects += 1
        except Exception as exc:  # cannot happen (each record's state was encoded): belt and braces
            log.exception("subject %s: state cannot be stored", key)
            _rollback(result, self._tally, start)
            self._refuse_all(
                items, f"state cannot be stored: {type(exc).__name__}: {exc}", result, now_ms
            )

    def _refuse_all(
        self,
        items: list[tuple[_Item, InRecord]],
        why: str,
        result: BatchResult,
        now_ms: int,
    ) -> None:
        for item, rec in items:
            result.outputs.append(
                self._dead_letter(
                    rec, "processing", f"processing failed: {why}", now_ms, _signal_type(item)
                )
            )

    def _process_subject(
        self,
        subject: _Subject,
        items: list[tuple[_Item, InRecord]],
        result: BatchResult,
        now_ms: int,
    ) -> None:
        """Apply a subject's events in order, re-evaluating grants where policies see a change."""
        signals = subject.signals
        # The policy-visible snapshot of the state, built when first needed: most telemetry
        # repeats a value and needs none. Until then it is the snapshot of the state as read
        # (values change only where ``value_changed``, which builds it first).
        snapshot: dict[str, Any] | None = None
        for item, rec in items:
            if isinstance(item, Signal):
                before = None
                if snapshot is None:  # the state before this signal, in case it changes a value
                    before = {**signals, "dims": dict(signals["dims"])}
                outcome, dim, value_changed = apply_signal(signals, item)
                self._tally.add(metrics.signals_by(rec.topic, item.type, outcome.value))
                if outcome is Applied.DUPLICATE:
                    continue
                subject.signals_dirty = True
                if outcome is Applied.STALE:
                    continue
                result.signal_timestamps.append(rec.timestamp)
                if not value_changed:
                    continue  # only the event time moved: nothing a policy reads changed
                if snapshot is None:
                    assert before is not None
                    snapshot = subject_snapshot(before, self.risk)
                after = subject_snapshot(signals, self.risk)
                visible = after != snapshot
                snapshot = after
                if not visible and not grant_scoped(dim):
                    continue  # e.g. a risk factor that did not move the level or score
                grants = self._grant_state(subject, result, now_ms)
                cause = _signal_cause(item, rec.timestamp)
                for grant in grants_seeing(grants, dim, visible):
                    self._evaluate(subject, grant, snapshot, cause, result, now_ms)
                # a device subject's own compliance (dimension ``device:<id>`` of subject
                # ``device:<id>``) matters to the grants bound to that device
                if (visible or dim == subject.key) and grants.get("subscribers"):
                    forwarded = {
                        "kind": "signal",
                        "event_id": item.event_id,
                        "event_time": item.event_time,
                        "signal_type": item.type,
                        "arrival": rec.timestamp,
                    }
                    self._forward(subject, grants, snapshot, forwarded, result)
            elif isinstance(item, GrantEvent):
                if snapshot is None:
                    snapshot = subject_snapshot(signals, self.risk)
                self._apply_grant_event(subject, item, rec, snapshot, result, now_ms)
            else:
                if snapshot is None:
                    snapshot = subject_snapshot(signals, self.risk)
                self._apply_subscription(subject, item, rec, snapshot, result, now_ms)

    def _apply_grant_event(
        self,
        subject: _Subject,
        ev: GrantEvent,
        rec: InRecord,
        snapshot: dict[str, Any],
        result: BatchResult,
        now_ms: int,
    ) -> None:
        self._tally.add(metrics.grant_events_by(ev.op))
        state = self._grant_state(subject, result, now_ms)
        if ev.op == "released":
            self._release(subject, ev, rec, result, now_ms)
            return
        grant = ev.grant
        assert grant is not None
        released = state.get("released", {}).get(ev.grant_id)
        if released is not None:
            # Offsets decide a grant's lifecycle: an issuance after the release is refused; one
            # before it is a replay of what the release already ended (after a restore).
            if rec.offset > released[2]:
                reason = (
                    f"grant {ev.grant_id!r} was released; a released grant id cannot be issued "
                    "again, issue a new grant id"
                )
                result.outputs.append(self._dead_letter(rec, "validation", reason, now_ms))
            return
        tombstone = state["revoked"].get(ev.grant_id)
        if tombstone is not None:
            if tombstone[0] != grant["issued_at"]:  # same issuance again = a replay: ignore
                reason = (
                    f"grant {ev.grant_id!r} was revoked and revocation is terminal; "
                    "issue a new grant id"
                )
                result.outputs.append(self._dead_letter(rec, "validation", reason, now_ms))
            return
        if grant.get("expires_at") and grant["expires_at"] <= now_ms:
            result.outputs.append(
                self._dead_letter(rec, "validation", "grant has already expired", now_ms)
            )
            return
        horizon = refused_by_pruning(subject.signals, grant)
        if horizon is not None and ev.grant_id not in state["grants"]:
            reason = (
                f"grant {ev.grant_id!r} names session {short(grant['session_id'])} and was "
                f"issued at {to_rfc3339(grant['issued_at'])}, at or before "
                f"{to_rfc3339(horizon)}: session revocations that old were pruned from this "
                "subject's state (VIGIL_STATE_RETENTION_SECONDS), so the session may have been "
                "revoked; issue a new grant"
            )
            result.outputs.append(self._dead_letter(rec, "validation", reason, now_ms))
            return
        if ev.grant_id not in state["grants"]:
            result.active_grants_delta += 1
        state["grants"][ev.grant_id] = grant
        subject.grants_dirty = True
        self._subscribe(subject, grant, result)
        self._remember_roles(subject, state, grant, snapshot, result)
        cause = Cause("grant-issued", f"{ev.grant_id}@{grant['issued_at']}", grant["issued_at"])
        self._evaluate(subject, grant, snapshot, cause, result, now_ms)

    def _release(
        self, subject: _Subject, ev: GrantEvent, rec: InRecord, result: BatchResult, now_ms: int
    ) -> None:
        """End an active grant: a ``released`` tombstone and a Decision with cause ``release``,
        so the audit trail shows when it stopped being watched."""
        state = self._grant_state(subject, result, now_ms)
        released = state.setdefault("released", {})
        grant_id = ev.grant_id
        grant = state["grants"].pop(grant_id, None)
        if grant is None:
            if grant_id in released or grant_id in state["revoked"]:
                return  # a repeated release, or the release of a revoked grant: nothing to end
            # Not active here: a release before its issuance, a grant that already expired, or a
            # release under a wrong key. The tombstone refuses a later issuance of this id.
            released[grant_id] = [None, now_ms + TOMBSTONE_RETENTION_MS, rec.offset]
            subject.grants_dirty = True
            reason = (
                f"release of grant {grant_id!r}, which is not active for subject {subject.key!r} "
                "(never issued under this key, or already expired)"
            )
            result.outputs.append(self._dead_letter(rec, "unknown-grant", reason, now_ms))
            return
        result.active_grants_delta -= 1
        subject.grants_dirty = True
        keep_until = (grant.get("expires_at") or now_ms) + TOMBSTONE_RETENTION_MS
        if ephemeral(grant):  # until it expires; then a replayed issuance is refused as expired
            keep_until = grant["expires_at"]
        released[grant_id] = [grant["issued_at"], keep_until, rec.offset]
        cause = Cause("release", f"{grant_id}@{grant['issued_at']}", rec.timestamp)
        self._lifecycle_decision(subject, grant, cause, result, now_ms)
        self._ended(subject, state, grant, grant_id, [grant_id], rec.timestamp, result)

    def _lifecycle_decision(
        self,
        subject: _Subject,
        grant: dict[str, Any],
        cause: Cause,
        result: BatchResult,
        now_ms: int,
    ) -> None:
        """Publish the Decision of a grant that ended without an evaluation (release)."""
        decision = lifecycle_decision(grant, subject.key, cause, now_ms, self.engine.digest)
        self._publish(
            subject.key, Evaluation(decision=decision, revocation=None), cause.kind, result
        )

    # -- delegation (docs/delegation.md) ---------------------------------------------------

    def _subscription_out(self, key: str, record: dict[str, Any], result: BatchResult) -> None:
        """A record for ``key``'s partition on the subscriptions topic."""
        topic = self.topics.subscriptions
        if topic is None:
            return
        result.outputs.append(
            OutRecord(topic, key.encode(), encode_subscription(record), _JSON_HEADERS, True)
        )

    def _subscribe(self, subject: _Subject, grant: dict[str, Any], result: BatchResult) -> None:
        """A new grant subscribes to the partition of each member of its ``on_behalf_of``
        chain and of its device subject; the last member also learns the ``parent_grant_id``
        it was made under."""
        chain = grant.get("on_behalf_of") or []
        last = chain[-1] if chain else None
        for member in delegation.dependencies(grant):
            self._subscription_out(
                member,
                {
                    "op": SUBSCRIBE,
                    "member": member,
                    "home": subject.key,
                    "grant_id": grant["grant_id"],
                    "parent_grant_id": grant.get("parent_grant_id") if member == last else None,
                },
                result,
            )

    def _remember_roles(
        self,
        subject: _Subject,
        state: GrantState,
        grant: dict[str, Any],
        snapshot: dict[str, Any],
        result: BatchResult,
    ) -> None:
        """This subject's roles as a chain member are those of its last issued grant; a change
        is forwarded to the grants that depend on it."""
        roles = grant["principal"]["roles"]
        if state.get("roles") == roles:
            return
        state["roles"] = roles
        subject.grants_dirty = True
        if state.get("subscribers"):
            cause = {
                "kind": "dependency",
                "event_id": f"{subject.key}@{grant['grant_id']}",
                "event_time": grant["issued_at"],
            }
            self._forward(subject, state, snapshot, cause, result)

    def _forward(
        self,
        subject: _Subject,
        state: GrantState,
        snapshot: dict[str, Any],
        cause: dict[str, Any],
        result: BatchResult,
        homes: list[str] | None = None,
    ) -> None:
        """Send this subject's policy-visible state to the partitions of the grants that
        depend on it (every subscriber's home, or ``homes``)."""
        own_device = subject.signals["dims"].get(subject.key)  # a device subject's compliance
        device = None if own_device is None else [own_device[0], own_device[2]["status"]]
        for home in delegation.homes(state) if homes is None else homes:
            record = {
                "op": STATE,
                "member": subject.key,
                "home": home,
                "roles": state.get("roles") or [],
                "signals": snapshot,
                "cause": cause,
                "device": device,
            }
            self._subscription_out(home, record, result)

    def _ended(
        self,
        subject: _Subject,
        state: GrantState,
        grant: dict[str, Any],
        root: str,
        path: list[str],
        event_time: int,
        result: BatchResult,
    ) -> None:
        """A grant left the active set (revoked, expired, released): its subscriptions go, its
        members' replicas go when no other grant names them, and every grant made under it is
        revoked (``cascade``, naming ``root`` and the ``path`` of grant ids down to it)."""
        grant_id = grant["grant_id"]
        for member in delegation.dependencies(grant):
            self._subscription_out(
                member,
                {"op": "unsubscribe", "member": member, "home": subject.key, "grant_id": grant_id},
                result,
            )
        if delegation.forget_members(state, grant):
            subject.grants_dirty = True
        for child, home in delegation.children_of(state, grant_id):
            self._subscription_out(
                home,
                {
                    "op": CASCADE,
                    "home": home,
                    "grant_id": child,
                    "root_cause": root,
                    "path": [*path, child],
                    "event_time": event_time,
                },
                result,
            )

    def _apply_subscription(
        self,
        subject: _Subject,
        ev: SubscriptionEvent,
        rec: InRecord,
        snapshot: dict[str, Any],
        result: BatchResult,
        now_ms: int,
    ) -> None:
        self._tally.add(metrics.delegation_records_by(ev.op))
        state = self._grant_state(subject, result, now_ms)
        body = ev.body
        if ev.op == SUBSCRIBE:
            self._on_subscribe(subject, state, body, rec, snapshot, result)
        elif ev.op == STATE:
            self._on_state(subject, state, body, snapshot, result, now_ms)
        elif ev.op == CASCADE:
            self._on_cascade(subject, state, body, snapshot, result, now_ms)
        elif delegation.subscribers(state).pop(body["grant_id"], None) is not None:
            subject.grants_dirty = True  # unsubscribe

    def _on_subscribe(
        self,
        subject: _Subject,
        state: GrantState,
        body: dict[str, Any],
        rec: InRecord,
        snapshot: dict[str, Any],
        result: BatchResult,
    ) -> None:
        """At the member's partition: remember the dependent grant and send it this subject's
        state. A grant made under a parent grant this subject does not hold (any more) is
        revoked at once: its delegation is not active."""
        grant_id, home, parent = body["grant_id"], body["home"], body["parent_grant_id"]
        if parent is not None and parent not in state["grants"]:
            cascade = {
                "op": CASCADE,
                "home": home,
                "grant_id": grant_id,
                "root_cause": parent,
                "path": [parent, grant_id],
                "event_time": rec.timestamp,
            }
            self._subscription_out(home, cascade, result)
            return
        subs = delegation.subscribers(state)
        if subs.get(grant_id) != [home, parent]:
            subs[grant_id] = [home, parent]
            subject.grants_dirty = True
        cause = {
            "kind": "dependency",
            "event_id": f"{subject.key}@{grant_id}",
            "event_time": rec.timestamp,
        }
        self._forward(subject, state, snapshot, cause, result, [home])

    def _on_state(
        self,
        subject: _Subject,
        state: GrantState,
        body: dict[str, Any],
        snapshot: dict[str, Any],
        result: BatchResult,
        now_ms: int,
    ) -> None:
        """At the home partition: update the member's replica and re-evaluate the grants whose
        chain names it, when what they see of it changed."""
        member = body["member"]
        device = body["device"]
        new = {
            "roles": body["roles"],
            "signals": body["signals"],
            "device": None if device is None else list(device),
        }
        known = state.get("members")
        if known is not None and known.get(member) == new:
            return  # the replica holds this already (each subscribe is answered with a state)
        dependents = delegation.dependents(state, member)
        if not dependents:
            return  # the grants that subscribed ended since: nothing to keep
        members = state.setdefault("members", {})
        seen = members.get(member) or {"roles": [], "signals": self._no_signals, "device": None}
        members[member] = new
        subject.grants_dirty = True
        if seen == new:
            return
        fwd = body["cause"]
        is_signal = fwd["kind"] == "signal"
        for grant in dependents:
            path = tuple(delegation.path_from(grant, subject.key, member))
            cause = Cause(
                fwd["kind"],
                fwd["event_id"],
                fwd["event_time"],
                fwd["signal_type"] if is_signal else "none",
                fwd["arrival"] if is_signal else -1,
                root_cause=fwd["event_id"] if is_signal else None,
                path=path,
            )
            if grant["grant_id"] in state["grants"]:  # a cascade may have ended it meanwhile
                self._evaluate(subject, grant, snapshot, cause, result, now_ms)

    def _on_cascade(
        self,
        subject: _Subject,
        state: GrantState,
        body: dict[str, Any],
        snapshot: dict[str, Any],
        result: BatchResult,
        now_ms: int,
    ) -> None:
        """At the home partition: the grant was made under a delegation that ended; revoke it
        (terminal, no policy consulted) and pass the cascade on to the grants made under it."""
        grant_id = body["grant_id"]
        grant = state["grants"].get(grant_id)
        if grant is None:
            return  # ended already (or a replay): revocation is terminal, nothing to repeat
        path = tuple(body["path"])
        root = body["root_cause"]
        cause = Cause("cascade", root, body["event_time"], root_cause=root, path=path)
        members = state.get("members") or {}
        chain = delegation.delegation_attributes(grant, members, self._no_signals)
        device = delegation.device_replica(grant, members)
        request = effective_request(grant, snapshot, subject.signals, chain, device)
        ev = delegation_revocation(
            grant,
            subject.key,
            request,
            cause,
            "vigil.delegation.cascade",
            now_ms,
            self.engine.digest,
        )
        del state["grants"][grant_id]
        subject.grants_dirty = True
        result.active_grants_delta -= 1
        keep_until = (grant.get("expires_at") or now_ms) + TOMBSTONE_RETENTION_MS
        state["revoked"][grant_id] = [grant["issued_at"], keep_until]
        self._publish(subject.key, ev, cause.kind, result, cause)
        self._ended(subject, state, grant, root, list(path), body["event_time"], result)

    # -- policy change ----------------------------------------------------------------------

    def flush_metrics(self) -> None:
        """Apply the metric increments of the batches since the last flush: call it once their
        effects are produced and persisted, so that a batch retried after an outage (or replayed
        after a crash) is counted once."""
        self._tally.flush()

    def discard_metrics(self) -> None:
        """Forget the increments of batches whose effects were not persisted (to be retried)."""
        self._tally.clear()

    def set_engine(self, engine: PolicyEngine) -> None:
        """Switch to another compiled bundle; grants are re-evaluated by ``reevaluate``."""
        self.engine = engine
        self._memo = engine.new_memo()

    def reevaluate(
        self, grant_keys: Sequence[bytes], store: PartitionStore, now_ms: int
    ) -> BatchResult:
        """Evaluate, with the current bundle, every grant of these subjects that was last
        evaluated with another bundle (cause ``policy-change``). Idempotent: a grant records
        the digest it was evaluated with, so a crash mid-way resumes where it stopped."""
        result = BatchResult()
        digest = self.engine.digest
        self._memo = self.engine.new_memo(now=datetime.fromtimestamp(now_ms / 1000, tz=UTC))
        for gkey, raw_grants in zip(grant_keys, store.get_many(list(grant_keys)), strict=True):
            if raw_grants is None:
                continue
            grants = orjson.loads(raw_grants)
            if all(g.get("digest") == digest for g in grants["grants"].values()):
                continue  # already judged by this bundle (e.g. a resumed scan)
            skey = gkey[len(GRANT_PREFIX) :]
            key = skey.decode()
            mark, delta = len(result.outputs), result.active_grants_delta
            try:
                subject = _Subject(key, store, store.get(signal_key(skey)), grants)
                snapshot = subject_snapshot(subject.signals, self.risk)
                cause = Cause("policy-change", digest, now_ms)
                for grant in list(self._grant_state(subject, result, now_ms)["grants"].values()):
                    if grant.get("digest") != digest:
                        previous = grant.get("digest")
                        self._evaluate(subject, grant, snapshot, cause, result, now_ms, previous)
                        self._tally.add(metrics.REEVALUATED_GRANTS)
            except TransientError:
                raise  # an outage: the runner retries these subjects
            except Exception:  # one broken subject must not stop the switch for the others
                log.exception("re-evaluating subject %s failed", key)
                del result.outputs[mark:]
                result.active_grants_delta = delta
                continue
            subject.collect(result.changed_states)
        return result

    def would_revoke(
        self, engine: PolicyEngine, grant_keys: Sequence[bytes], store: PartitionStore, now_ms: int
    ) -> tuple[int, list[WouldRevoke]]:
        """Dry run of a bundle switch: evaluate the active grants of these subjects with
        ``engine`` and return (active grants seen, the grants it would revoke). Produces no
        output, writes no state, touches no metric (the blast-radius guard and
        ``vigil policy push --dry-run``)."""
        memo = engine.new_memo(now=datetime.fromtimestamp(now_ms / 1000, tz=UTC))
        cause = Cause("policy-change", engine.digest, now_ms)
        active = 0
        revoked: list[WouldRevoke] = []
        for gkey, raw_grants in zip(grant_keys, store.get_many(list(grant_keys)), strict=True):
            if raw_grants is None:
                continue
            skey = gkey[len(GRANT_PREFIX) :]
            key = skey.decode()
            try:
                grants = orjson.loads(raw_grants)
                raw_signals = store.get(signal_key(skey))
                signals = orjson.loads(raw_signals) if raw_signals else new_signal_state()
                snapshot = subject_snapshot(signals, self.risk)
                for grant in grants["grants"].values():
                    expires_at = grant.get("expires_at")
                    if expires_at and expires_at <= now_ms:
                        continue
                    active += 1
                    members = grants.get("members") or {}
                    chain = None
                    if grant.get("on_behalf_of"):
                        chain = delegation.delegation_attributes(grant, members, self._no_signals)
                    device = delegation.device_replica(grant, members)
                    ev = evaluate_grant(
                        engine,
                        grant,
                        key,
                        snapshot,
                        signals,
                        cause,
                        now_ms,
                        memo,
                        None,
                        chain,
                        device,
                    )
                    if ev.revocation is not None:
                        revoked.append(_would_revoke(key, ev.decision))
            except Exception:  # as in reevaluate: a broken subject is skipped, not revoked
                log.exception("dry evaluation of subject %s failed", key)
        return active, revoked

    def sweep(self, grant_keys: Sequence[bytes], store: PartitionStore, now_ms: int) -> BatchResult:
        """The background pass over these subjects' grant states, for subjects that receive no
        events: grants past ``expires_at`` expire (Decision + Revocation, cause ``expiry``),
        grants whose policies read the clock and whose time slot is due are evaluated again
        (cause ``time``), and old tombstones are dropped. Costs one read and one parse per
        subject; the signal state is read only when a grant is due for time re-evaluation."""
        result = BatchResult()
        memo: CheckMemo | None = None
        for gkey, raw in zip(grant_keys, store.get_many(list(grant_keys)), strict=True):
            if raw is None:
                continue
            grants = orjson.loads(raw)
            due = any(g.get("time_due", _NEVER) <= now_ms for g in grants["grants"].values())
            skey = gkey[len(GRANT_PREFIX) :]
            key = skey.decode()
            mark, delta = len(result.outputs), result.active_grants_delta
            try:
                raw_signals = store.get(signal_key(skey)) if due else None
                subject = _Subject(key, store, raw_signals, grants)
                state = self._grant_state(subject, result, now_ms)
                if due:
                    if memo is None:
                        memo = self.engine.new_memo(now=_datetime(self._time_slot(now_ms)))
                    self._time_reevaluate(subject, state, result, now_ms, memo)
            except TransientError:
                raise  # an outage: the runner retries these subjects
            except Exception:  # one broken subject must not stop the sweep for the others
                log.exception("sweeping subject %s failed", key)
                del result.outputs[mark:]
                result.active_grants_delta = delta
                continue
            subject.collect(result.changed_states)
        return result

    def prune(
        self, signal_keys: Sequence[bytes], store: PartitionStore, now_ms: int
    ) -> BatchResult:
        """The sweep's second pass, over these subjects' signal states: device and session
        entries no active grant named for ``state_retention_ms`` are removed
        (``streams.state.subject.prune_entries``). The changed signal states go to the
        changelog like any other change, so a restore never brings a pruned entry back. Costs
        one read per subject; the grant state is read only for subjects with such entries."""
        result = BatchResult()
        retention = self.state_retention_ms
        if retention <= 0:
            return result
        candidates = [
            (skey, raw)
            for skey, raw in zip(signal_keys, store.get_many(list(signal_keys)), strict=True)
            if raw is not None and (b'"device:' in raw or b'"session:' in raw)
        ]
        if not candidates:
            return result
        gkeys = [grant_key(skey[len(SIGNAL_PREFIX) :]) for skey, _ in candidates]
        for (skey, raw), raw_grants in zip(candidates, store.get_many(gkeys), strict=True):
            try:
                signals = orjson.loads(raw)
                grants = orjson.loads(raw_grants) if raw_grants is not None else new_grant_state()
                changed, pruned = prune_entries(signals, named_entries(grants), now_ms, retention)
                if not changed:
                    continue
                encoded = orjson.dumps(signals)
            except Exception:  # one broken subject must not stop the sweep for the others
                log.exception("pruning subject %r failed", skey)
                continue
            result.changed_states[skey] = encoded
            for dim in pruned:
                self._tally.add(metrics.state_pruned_by(dim.split(":", 1)[0]))
        return result

    # -- time -------------------------------------------------------------------------------

    def _time_slot(self, now_ms: int) -> int:
        """The latest slot boundary at or before ``now_ms``: time re-evaluations run with
        ``now()`` fixed at it, so a replay within the slot repeats the same decision."""
        return now_ms - now_ms % self.time_reevaluation_ms

    def _time_reevaluate(
        self,
        subject: _Subject,
        state: GrantState,
        result: BatchResult,
        now_ms: int,
        memo: CheckMemo,
    ) -> None:
        slot = self._time_slot(now_ms)
        digest = self.engine.digest
        snapshot = subject_snapshot(subject.signals, self.risk)
        for grant in list(state["grants"].values()):
            if grant.get("time_due", _NEVER) > now_ms:
                continue
            if not self.engine.reads_time(grant["resource"]["kind"]):
                continue  # a newer bundle stopped reading time; its policy-change scan clears it
            cause = Cause("time", f"{grant['grant_id']}@{slot}", slot)
            previous = grant.get("digest")
            previous = previous if previous != digest else None
            self._evaluate(subject, grant, snapshot, cause, result, now_ms, previous, memo)
            self._tally.add(metrics.TIME_REEVALUATIONS)

    def _time_due(self, grant: dict[str, Any], now_ms: int) -> int | None:
        """When this grant must be evaluated again because time passed: the next slot boundary
        if a policy that may decide it reads the clock, else never (None)."""
        if not self.engine.reads_time(grant["resource"]["kind"]):
            return None
        return self._time_slot(now_ms) + self.time_reevaluation_ms

    # -- grant lifecycle ------------------------------------------------------------------

    def _grant_state(self, subject: _Subject, result: BatchResult, now_ms: int) -> GrantState:
        """The subject's grant part; grants that expired since it was written leave with a
        Decision and a Revocation (cause ``expiry``) and a tombstone (no re-issue)."""
        state = subject.grants(now_ms)
        if subject.expired:
            expired, subject.expired = subject.expired, []
            result.active_grants_delta -= len(expired)
            self._tally.add(metrics.EXPIRED_GRANTS, len(expired))
            for grant in expired:
                ev = expiry_outputs(grant, subject.key, now_ms, self.engine.digest)
                if not ephemeral(grant):  # a workload's grant leaves nothing (``ephemeral``)
                    keep_until = grant["expires_at"] + TOMBSTONE_RETENTION_MS
                    state["revoked"][grant["grant_id"]] = [grant["issued_at"], keep_until]
                self._publish(subject.key, ev, "expiry", result)
                gid = grant["grant_id"]
                self._ended(subject, state, grant, gid, [gid], grant["expires_at"], result)
        return state

    def _publish(
        self,
        key: str,
        ev: Evaluation,
        cause_kind: str,
        result: BatchResult,
        cause: Cause | None = None,
    ) -> None:
        decision = ev.decision
        tally = self._tally
        tally.add(metrics.decisions_by(decision["effect"], cause_kind))
        engine = self.engine
        kind = decision["request"]["resource"]["kind"]
        kind = kind if kind in engine.named_kinds else "other"
        for a in decision["actions"]:
            action = a["action"] if a["action"] in engine.named_actions else "other"
            tally.add(metrics.decision_actions_by(a["effect"], cause_kind, kind, action))
        key_bytes = key.encode()
        result.outputs.append(
            OutRecord(
                self.topics.decisions,
                key_bytes,
                self._decision_enc.encode(ev.decision),
                self._decision_enc.headers,
            )
        )
        if ev.revocation is None:
            return
        signal_type = "none"
        if cause is not None and cause.kind == "signal":
            signal_type = cause.signal_type
            result.revocation_causes.append((cause.event_time, cause.arrival))
        tally.add(metrics.revocations_by(cause_kind, signal_type))
        result.outputs.append(
            OutRecord(
                self.topics.revocations,
                key_bytes,
                self._revocation_enc.encode(ev.revocation),
                self._revocation_enc.headers,
            )
        )

    def _evaluate(
        self,
        subject: _Subject,
        grant: dict[str, Any],
        snapshot: dict[str, Any],
        cause: Cause,
        result: BatchResult,
        now_ms: int,
        previous_digest: str | None = None,
        memo: CheckMemo | None = None,
    ) -> None:
        key = subject.key
        members: dict[str, Any] = {}
        chain = None
        device = None
        if grant.get("on_behalf_of") or grant.get("device_id"):
            members = subject.grants(now_ms).get("members") or {}
            device = delegation.device_replica(grant, members)
        if grant.get("on_behalf_of"):
            chain = delegation.delegation_attributes(grant, members, self._no_signals)
        broken = delegation.broken_member(grant, members) if members else None
        if broken is not None:
            # a disabled or compromised chain member ends the grant whatever the policies say
            request = effective_request(grant, snapshot, subject.signals, chain, device)
            rule = f"vigil.delegation.{broken[1]}"
            ev = delegation_revocation(grant, key, request, cause, rule, now_ms, self.engine.digest)
        else:
            ev = evaluate_grant(
                self.engine,
                grant,
                key,
                snapshot,
                subject.signals,
                cause,
                now_ms,
                self._memo if memo is None else memo,
                previous_digest,
                chain,
                device,
            )
        if grant.get("digest") != self.engine.digest:
            grant["digest"] = self.engine.digest  # which bundle last judged this grant
            subject.grants_dirty = True
        due = self._time_due(grant, now_ms)
        if grant.get("time_due") != due:
            if due is None:
                del grant["time_due"]
            else:
                grant["time_due"] = due  # the next time re-evaluation (see ``sweep``)
            subject.grants_dirty = True
        metrics.EVALUATION_SECONDS.observe(ev.decision["eval_duration_seconds"])
        if ev.decision["errors"]:
            self._tally.add(metrics.evaluation_errors_by(cause.kind))
        if ev.revocation is not None:
            # Revocation is terminal: the grant leaves the active set and leaves a tombstone.
            state = self._grant_state(subject, result, now_ms)
            grant_id = grant["grant_id"]
            del state["grants"][grant_id]
            subject.grants_dirty = True
            result.active_grants_delta -= 1
            keep_until = (grant.get("expires_at") or now_ms) + TOMBSTONE_RETENTION_MS
            state["revoked"][grant_id] = [grant["issued_at"], keep_until]
            self._publish(key, ev, cause.kind, result, cause)
            root, path = _root_of(cause, grant_id)
            self._ended(subject, state, grant, root, path, cause.event_time, result)
            return
        self._publish(key, ev, cause.kind, result, cause)


@dataclass(frozen=True, slots=True)
class WouldRevoke:
    """A grant a candidate bundle would revoke: (action, policy, cause) per denied action;
    cause is ``rule <name>``, ``no matching rule`` or ``evaluation error``."""

    subject: str
    grant_id: str
    denied: tuple[tuple[str, str, str], ...]


def _would_revoke(subject: str, decision: dict[str, Any]) -> WouldRevoke:
    error = bool(decision["errors"])
    denied = tuple(
        (
            a["action"],
            a["policy"] or "",
            "evaluation error"
            if error
            else (f"rule {a['rule']}" if a["rule"] else "no matching rule"),
        )
        for a in decision["actions"]
        if a["effect"] != ALLOW
    )
    return WouldRevoke(subject, decision["grant_id"], denied)


class _Subject:
    """One subject's state during a batch: signal part read up front, grant part on demand."""

    __slots__ = (
        "key",
        "signals",
        "signals_dirty",
        "grants_dirty",
        "expired",
        "_grants",
        "_pending_grants",
        "_store",
    )

    def __init__(
        self,
        key: str,
        store: PartitionStore,
        raw_signals: bytes | None,
        grants: GrantState | None = None,
    ) -> None:
        self.key = key
        self._store = store
        self.signals: SignalState = (
            orjson.loads(raw_signals) if raw_signals is not None else new_signal_state()
        )
        self.signals_dirty = False
        self.grants_dirty = False
        self._grants: GrantState | None = None
        self._pending_grants = grants
        self.expired: list[dict[str, Any]] = []  # removed by ``grants``, to be published

    def grants(self, now_ms: int) -> GrantState:
        """The grant part, read once per batch; expired grants (kept in ``expired`` for the
        pipeline to publish) and old tombstones drop out."""
        if self._grants is None:
            if self._pending_grants is not None:
                self._grants = self._pending_grants
            else:
                raw = self._store.get(grant_key(self.key.encode()))
                self._grants = orjson.loads(raw) if raw is not None else new_grant_state()
            expired = expire_grants(self._grants, now_ms)
            self.expired.extend(expired)
            if expired or _prune_tombstones(self._grants, now_ms):
                self.grants_dirty = True
        return self._grants

    def encode(self) -> tuple[bytes | None, bytes | None]:
        """The changed parts, encoded (None: unchanged); raises if a part cannot be encoded."""
        signals = orjson.dumps(self.signals) if self.signals_dirty else None
        grants = (
            orjson.dumps(self._grants) if self.grants_dirty and self._grants is not None else None
        )
        return signals, grants

    def collect(self, changed: dict[bytes, bytes | None]) -> None:
        """Add the changed parts to ``changed``: both or, if either cannot be encoded, none."""
        signals, grants = self.encode()
        key = self.key.encode()
        if signals is not None:
            changed[signal_key(key)] = signals
        if grants is not None:
            assert self._grants is not None
            # an emptied grant state is deleted: ephemeral subjects leave no key behind
            changed[grant_key(key)] = None if grant_state_empty(self._grants) else grants

    def savepoint(self) -> tuple[Any, ...]:
        """A deep copy of everything a record can change (slow path only)."""
        return copy.deepcopy((self.signals, self._grants, self.signals_dirty, self.grants_dirty))

    def restore(self, saved: tuple[Any, ...]) -> None:
        self.signals, self._grants, self.signals_dirty, self.grants_dirty = saved


def _signal_cause(item: Signal, arrival: int) -> Cause:
    """The cause of re-evaluations by ``item``; a credential-change carries what the SSF
    transmitter needs for a CAEP credential-change SET (docs/shared-signals.md)."""
    if item.type == "credential-change":
        attrs = item.attributes
        return Cause(
            "signal",
            item.event_id,
            item.event_time,
            item.type,
            arrival,
            attrs.get("credential_type"),
            attrs.get("change_type"),
        )
    return Cause("signal", item.event_id, item.event_time, item.type, arrival)


def _root_of(cause: Cause, grant_id: str) -> tuple[str, list[str]]:
    """The root cause and path prefix a revoked grant passes on to the grants made under it:
    the cascade's own when it was itself cascaded, else the signal that revoked it (or the
    grant itself for any other cause) and the grant."""
    if cause.kind == "cascade" and cause.path is not None:
        return cause.root_cause or cause.event_id, list(cause.path)
    if cause.root_cause is not None:
        return cause.root_cause, [grant_id]
    if cause.kind == "signal":
        return cause.event_id, [grant_id]
    return grant_id, [grant_id]


def _signal_type(item: _Item) -> str:
    return item.type if type(item) is Signal else "unknown"


_Marks = tuple[int, int, int, int, dict[Any, float]]


def _marks(result: BatchResult, tally: metrics.Tally) -> _Marks:
    """Where a subject's outputs begin, to ``_rollback`` to when its processing fails."""
    return (
        len(result.outputs),
        len(result.signal_timestamps),
        len(result.revocation_causes),
        result.active_grants_delta,
        tally.mark(),
    )


def _rollback(result: BatchResult, tally: metrics.Tally, marks: _Marks) -> None:
    del result.outputs[marks[0] :]
    del result.signal_timestamps[marks[1] :]
    del result.revocation_causes[marks[2] :]
    result.active_grants_delta = marks[3]
    tally.rollback(marks[4])


def _datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _prune_tombstones(state: GrantState, now_ms: int) -> bool:
    pruned = False
    for name in ("revoked", "released"):
        tombstones = state.get(name)
        if not tombstones:
            continue
        old = [gid for gid, entry in tombstones.items() if entry[1] <= now_ms]
        for gid in old:
            del tombstones[gid]
        pruned = pruned or bool(old)
    return pruned
