"""Prometheus metrics of the pipeline (base units, ``_total`` counters, bounded label sets)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SIGNALS = Counter(
    "vigil_signals_total",
    "Signals consumed, by input topic, signal type (unknown when it could not be decoded) and "
    "outcome (applied, stale, duplicate, dead-lettered)",
    ["topic", "type", "outcome"],
)
GRANT_EVENTS = Counter("vigil_grant_events_total", "Grant events consumed, by op", ["op"])
DELEGATION_RECORDS = Counter(
    "vigil_delegation_records_total",
    "Records applied from the subscriptions topic (docs/delegation.md), by op: subscribe, "
    "unsubscribe, state, cascade",
    ["op"],
)
DEADLETTERS = Counter(
    "vigil_deadletters_total",
    "Input records sent to the dead-letter topic, by error kind",
    ["error"],
)
DECISIONS = Counter(
    "vigil_decisions_total", "Decisions published, by effect and cause", ["effect", "cause"]
)
REVOCATIONS = Counter(
    "vigil_revocations_total",
    "Revocations published, by cause and the signal type that caused them (none: not a signal)",
    ["cause", "signal_type"],
)
EVALUATION_SECONDS = Histogram(
    "vigil_policy_evaluation_seconds",
    "Policy evaluation time per grant",
    buckets=(5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3),
)
BATCH_SECONDS = Histogram(
    "vigil_batch_seconds",
    "Wall time of one consumed batch: decode, state, evaluate, produce, persist",
    buckets=(1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_RECORDS = Histogram(
    "vigil_batch_records",
    "Records per consumed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
SIGNAL_LAG_SECONDS = Histogram(
    "vigil_signal_to_decision_seconds",
    "From a signal's Kafka timestamp to its decisions being produced",
    buckets=(1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 5.0),
)
EXPIRED_GRANTS = Counter(
    "vigil_grants_expired_total", "Grants removed from the active set at their expires_at"
)
TIME_REEVALUATIONS = Counter(
    "vigil_time_reevaluations_total",
    "Grants evaluated again because time passed (their policies read now()/timeSince())",
)
STATE_PRUNED = Counter(
    "vigil_state_entries_pruned_total",
    "Device and session entries removed from subject state because no grant named them for "
    "the state retention, by kind (device, session)",
    ["kind"],
)
ACTIVE_GRANTS = Gauge(
    "vigil_active_grants", "Active grants in the partitions this worker owns (set by the runner)"
)
ASSIGNED_PARTITIONS = Gauge("vigil_assigned_partitions", "Input partitions owned by this worker")
POLICY_BUNDLE_SWITCHES = Counter(
    "vigil_policy_bundle_switches_total", "Policy bundles switched to, by source", ["source"]
)
POLICY_BUNDLE_REJECTED = Counter(
    "vigil_policy_bundle_rejected_total",
    "Policy bundle records refused, by source (push, directory, restart) and reason (corrupt, "
    "digest, path, size, unsigned, unknown-key, bad-signature, compile)",
    ["source", "reason"],
)
POLICY_BUNDLE_HELD = Gauge(
    "vigil_policy_bundle_held",
    "1 while a pushed bundle is held by the blast-radius guard (operator must confirm or roll "
    "back)",
)
POLICY_BUNDLE_WOULD_REVOKE = Gauge(
    "vigil_policy_bundle_would_revoke_grants",
    "Owned active grants the pending (evaluating or held) bundle would revoke; 0 when none",
)
POLICY_BUNDLE_INFO = Gauge(
    "vigil_policy_bundle_info", "The running policy bundle (value 1)", ["digest"]
)
REEVALUATION_PENDING_PARTITIONS = Gauge(
    "vigil_policy_reevaluation_pending_partitions",
    "Owned partitions whose grants are still being re-evaluated after a bundle switch",
)
REEVALUATED_GRANTS = Counter(
    "vigil_policy_reevaluated_grants_total", "Grants re-evaluated because the bundle changed"
)
MERGE_IDLE_EXPIRED = Counter(
    "vigil_merge_idle_expired_total",
    "Times a partition's merge stopped waiting for a lagging input after max_task_idle_ms and "
    "applied the other inputs without it",
)
RESTORED_RECORDS = Counter(
    "vigil_changelog_restored_records_total", "Changelog records replayed into local state"
)
DEGRADED = Gauge(
    "vigil_degraded",
    "1 while a dependency is unavailable (a batch backs off, or the broker probe fails), by reason",
    ["reason"],
)
BACKOFFS = Counter(
    "vigil_backoff_total",
    "Batches or steps retried in place after a dependency failed, by reason (dependency)",
    ["reason"],
)


# -- observability: what SREs watch (issue 11; deploy/grafana, deploy/prometheus) ---------------

DECISION_ACTIONS = Counter(
    "vigil_decision_actions_total",
    "Actions decided for grants, by effect, cause, resource kind and action; a kind or action the "
    "running bundle does not name counts as 'other' (bounded by the bundle)",
    ["effect", "cause", "kind", "action"],
)
EVALUATION_ERRORS = Counter(
    "vigil_evaluation_errors_total",
    "Grant decisions whose policy evaluation reported errors (a condition failed to evaluate)",
    ["cause"],
)
SIGNAL_TO_REVOCATION_SECONDS = Histogram(
    "vigil_signal_to_revocation_seconds",
    "From a signal to the revocations it caused being acknowledged by Kafka, measured since the "
    "signal's event_time (since=event_time) and since its Kafka record timestamp (since=arrival)",
    ["since"],
    buckets=(5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
STATE_SUBJECTS = Gauge(
    "vigil_state_subjects", "Subjects with signal state in the partitions this worker owns"
)
CONSUMER_LAG = Gauge(
    "vigil_consumer_lag_records",
    "Records of an owned input partition not yet fetched: the fetch response's high watermark "
    "minus the consumer position (never ListOffsets, which Tansu answers short)",
    ["topic", "partition"],
)
REBALANCES = Counter(
    "vigil_rebalances_total",
    "Consumer group rebalances this worker took part in, by phase",
    ["phase"],
)
RESTORE_REMAINING = Gauge(
    "vigil_changelog_restore_remaining_records",
    "Changelog records still to replay before the partitions being restored are ready (0: none)",
)
RESTORE_SECONDS = Histogram(
    "vigil_changelog_restore_seconds",
    "Time to restore the state of the partitions of one assignment (restored together) "
    "from the changelog",
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0),
)


class LabelCache:
    """Resolved label children of one metric: ``labels()`` costs a lock and a tuple per call."""

    def __init__(self, metric: Counter) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Counter] = {}

    def __call__(self, *values: str) -> Counter:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


signals_by = LabelCache(SIGNALS)
decisions_by = LabelCache(DECISIONS)
revocations_by = LabelCache(REVOCATIONS)
grant_events_by = LabelCache(GRANT_EVENTS)
delegation_records_by = LabelCache(DELEGATION_RECORDS)
state_pruned_by = LabelCache(STATE_PRUNED)
decision_actions_by = LabelCache(DECISION_ACTIONS)
evaluation_errors_by = LabelCache(EVALUATION_ERRORS)


class Tally:
    """Counter and gauge increments of one batch, applied once its effects are persisted (each
    prometheus ``inc`` takes a lock: per event that was ~4 % of a worker's time)."""

    __slots__ = ("_deltas",)

    def __init__(self) -> None:
        self._deltas: dict[Counter | Gauge, float] = {}

    def add(self, metric: Counter | Gauge, amount: float = 1.0) -> None:
        self._deltas[metric] = self._deltas.get(metric, 0.0) + amount

    def mark(self) -> dict[Counter | Gauge, float]:
        """The increments so far, to ``rollback`` to when the work after it is discarded."""
        return dict(self._deltas)

    def rollback(self, mark: dict[Counter | Gauge, float]) -> None:
        self._deltas = mark

    def flush(self) -> None:
        for metric, amount in self._deltas.items():
            if amount:
                metric.inc(amount)
        self._deltas.clear()

    def clear(self) -> None:
        self._deltas.clear()


# -- check API (streams/web/, streams/processing/check.py) -------------------------------------

API_REQUESTS = Counter(
    "vigil_api_requests_total",
    "Check API requests answered, by route and HTTP status",
    ["route", "status"],
)
API_REQUEST_SECONDS = Histogram(
    "vigil_api_request_seconds",
    "Check API request handling time (parse, live state, evaluation, audit enqueue)",
    ["route"],
    buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5),
)
CHECK_ACTIONS = Counter(
    "vigil_check_actions_total", "Actions decided by the check API, by effect", ["effect"]
)
CHECK_SPOOFED_ATTRIBUTES = Counter(
    "vigil_check_spoofed_attributes_total",
    "Reserved principal attributes (signals, grant, delegation) sent by a caller and discarded",
    ["attribute"],
)
CHECK_AUX_DATA_REJECTED = Counter(
    "vigil_check_aux_data_rejected_total",
    "Check and plan requests refused for their auxData.jwt token (400 invalid auxData), by "
    "reason: key_set, malformed, signature, expired, not_yet_valid",
    ["reason"],
)
AUX_DATA_JWKS_FETCHES = Counter(
    "vigil_aux_data_jwks_fetches_total",
    "Fetches of remote auxData.jwt key sets (JWKS URLs), by outcome (ok, error)",
    ["outcome"],
)
CHECK_AUDIT_DROPPED = Counter(
    "vigil_check_audit_dropped_total",
    "Check decisions not published because the audit queue was full",
)
CHECK_AUDIT_FAILED = Counter(
    "vigil_check_audit_failed_total",
    "Check decisions whose produce to the decisions topic failed",
)
GC_FROZEN_OBJECTS = Gauge(
    "vigil_gc_frozen_objects",
    "Objects built at startup and moved out of the garbage collector's sight (gc.freeze) once "
    "the worker was ready; 0 until then",
)
CHECK_AUDIT_QUEUE = Gauge(
    "vigil_check_audit_queue", "Check decisions waiting to be produced to the decisions topic"
)
SIGNAL_REPLICA_SUBJECTS = Gauge(
    "vigil_signal_replica_subjects",
    "Subjects whose signal state the worker's replica holds (every partition)",
)
SIGNAL_REPLICA_DELAY_SECONDS = Histogram(
    "vigil_signal_replica_delay_seconds",
    "From a changelog record's timestamp to it being visible to checks in the replica",
    buckets=(1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 5.0),
)

# -- revocations for PEPs without Kafka (streams/web/revocation_stream.py, webhooks.py) --------

REVOCATION_STREAMS = Gauge(
    "vigil_revocation_streams", "Open revocation streams (GET /api/revocations/stream)"
)
REVOCATION_STREAM_EVENTS = Counter(
    "vigil_revocation_stream_events_total", "Revocations sent on revocation streams"
)
REVOCATION_STREAM_SLOW = Counter(
    "vigil_revocation_stream_slow_disconnects_total",
    "Revocation streams cut off because their client did not read fast enough (buffer full)",
)
REVOCATION_STREAM_REJECTED = Counter(
    "vigil_revocation_stream_rejected_total",
    "Revocation stream requests refused because the worker's stream limit was reached",
)
WEBHOOK_DELIVERIES = Counter(
    "vigil_webhook_deliveries_total",
    "Webhook delivery attempts, by target and outcome (delivered, failed)",
    ["target", "outcome"],
)
WEBHOOK_DEADLETTERS = Counter(
    "vigil_webhook_deadletters_total",
    "Revocations a webhook target did not accept after the last try (dead-lettered)",
    ["target"],
)
WEBHOOK_ASSIGNED_PARTITIONS = Gauge(
    "vigil_webhook_assigned_partitions",
    "Revocation partitions whose webhook deliveries this worker makes, by target",
    ["target"],
)


# -- Shared Signals (streams/ssf, docs/shared-signals.md) -------------------------------------
SSF_SETS = Counter(
    "vigil_ssf_sets_total",
    "Security Event Tokens received, by delivery (push, poll) and outcome (accepted, duplicate, "
    "no-subject, or the RFC 8935 error code)",
    ["delivery", "outcome"],
)
SSF_JTI_CONFLICTS = Counter(
    "vigil_ssf_jti_conflicts_total",
    "SETs refused because their (iss, jti) was received before with a different payload",
)
SSF_JWKS_FETCHES = Counter(
    "vigil_ssf_jwks_fetches_total", "Transmitter JWKS fetches, by outcome (ok, error)", ["outcome"]
)
SSF_POLLS = Counter(
    "vigil_ssf_polls_total", "RFC 8936 poll requests to transmitters, by outcome", ["outcome"]
)
SSF_OUTBOUND = Counter(
    "vigil_ssf_outbound_sets_total",
    "Vigil's own SETs, by receiver (as configured) and outcome (delivered, retried, "
    "dead-lettered, unreadable)",
    ["receiver", "outcome"],
)
SSF_STREAM_VERIFIED = Gauge(
    "vigil_ssf_stream_verified",
    "1 once the managed SSF stream of a transmitter (as configured) was verified, else 0",
    ["transmitter"],
)
