"""The Grafana dashboards of ``deploy/grafana/dashboards/``, generated from one place.

``python -m streams.observability.dashboards`` (``make dashboards``) writes them;
tests/deploy checks that the files equal what this module generates, that every query uses
exported metrics, and (against a real Prometheus scraping running workers) that every query
parses and returns data. Plain dicts in Grafana's dashboard JSON model (schemaVersion 39):
``grafana-foundation-sdk`` would add a dependency without checking anything more.

Every panel and annotation uses the provisioned data source (fixed uid ``DATASOURCE_UID``,
deploy/grafana/provisioning/datasources/), so the files import with no ``__inputs``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATASOURCE_UID = "vigil-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
OUT = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"

# The revocation-latency objective (also in deploy/prometheus/vigil-alerts.yml): 99 % of the
# revocations a signal causes are acknowledged by Kafka within 1 s of the signal's arrival.
OBJECTIVE_SECONDS = 1.0
OBJECTIVE_RATIO = 0.99
OBJECTIVE_LE = "1.0"  # the histogram bucket boundary as prometheus_client formats it

RATE = "$__rate_interval"
ARRIVAL = 'since="arrival"'


def _target(expr: str, legend: str = "", ref: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": chr(ord("A") + ref),
        **extra,
    }


class _Board:
    """Lays panels out left to right, 24 columns wide, rows of ``height``."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_h = 0

    def add(
        self,
        title: str,
        targets: list[tuple[str, str]],
        *,
        kind: str = "timeseries",
        unit: str = "short",
        width: int = 12,
        height: int = 8,
        description: str = "",
        thresholds: list[tuple[str, float | None]] | None = None,
        options: dict[str, Any] | None = None,
        custom: dict[str, Any] | None = None,
    ) -> None:
        if self._x + width > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        fmt = {"format": "heatmap"} if kind == "heatmap" else {}
        steps = [{"color": c, "value": v} for c, v in (thresholds or [("green", None)])]
        panel: dict[str, Any] = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DATASOURCE,
            "gridPos": {"h": height, "w": width, "x": self._x, "y": self._y},
            "targets": [_target(e, legend, i, **fmt) for i, (e, legend) in enumerate(targets)],
            "fieldConfig": {
                "defaults": {
                    "unit": unit,
                    "thresholds": {"mode": "absolute", "steps": steps},
                    "custom": custom or {},
                },
                "overrides": [],
            },
            "options": options or {},
        }
        if thresholds and kind == "timeseries":
            panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] = {"mode": "line"}
        self.panels.append(panel)
        self._x += width
        self._row_h = max(self._row_h, height)


def _rollouts() -> dict[str, Any]:
    """Policy bundle switches as annotations on every dashboard (a rollout explains a change
    in deny ratio or revocations)."""
    return {
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "purple",
        "name": "Policy rollouts",
        "expr": "sum by (source) (increase(vigil_policy_bundle_switches_total[1m])) > 0",
        "step": "30s",
        "titleFormat": "Policy bundle switch",
        "textFormat": "from {{source}}",
        "useValueForTime": False,
    }


def _dashboard(uid: str, title: str, description: str, board: _Board) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vigil"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                _rollouts(),
            ]
        },
        "links": [{"type": "dashboards", "tags": ["vigil"], "title": "Vigil", "asDropdown": True}],
        "panels": board.panels,
    }


def _quantiles(metric: str, selector: str = "", by: str = "") -> list[tuple[str, str]]:
    sel = "{" + selector + "}" if selector else ""
    group = f"le{', ' + by if by else ''}"
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel}[{RATE}])))",
            f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in (0.5, 0.99)
    ]


def overview() -> dict[str, Any]:
    """RED: rate of decisions, errors (deny ratio, evaluation errors, dead letters), duration."""
    b = _Board()
    b.add(
        "Decisions / s by effect",
        [(f"sum by (effect) (rate(vigil_decisions_total[{RATE}]))", "{{effect}}")],
        unit="ops",
    )
    b.add(
        "Deny ratio",
        [
            (
                f'sum(rate(vigil_decisions_total{{effect="EFFECT_DENY"}}[{RATE}])) '
                f"/ sum(rate(vigil_decisions_total[{RATE}]))",
                "deny ratio",
            )
        ],
        unit="percentunit",
        width=6,
        description="Share of grant decisions that deny; a jump right after a policy rollout "
        "(annotation) points at the bundle.",
    )
    b.add(
        "Decisions by cause",
        [(f"sum by (cause) (rate(vigil_decisions_total[{RATE}]))", "{{cause}}")],
        unit="ops",
        width=6,
    )
    b.add(
        "Dead letters / s by error",
        [(f"sum by (error) (rate(vigil_deadletters_total[{RATE}]))", "{{error}}")],
        unit="ops",
        width=8,
        description="Input Vigil could not use; the records are on signals.deadletter.",
    )
    b.add(
        "Evaluation errors / s",
        [(f"sum by (cause) (rate(vigil_evaluation_errors_total[{RATE}]))", "{{cause}}")],
        unit="ops",
        width=8,
    )
    b.add(
        "Check API requests / s by status",
        [(f"sum by (status) (rate(vigil_api_requests_total[{RATE}]))", "{{status}}")],
        unit="reqps",
        width=8,
    )
    b.add(
        "Actions decided by kind and action",
        [
            (
                f"sum by (kind, action, effect) (rate(vigil_decision_actions_total[{RATE}]))",
                "{{kind}} {{action}} {{effect}}",
            )
        ],
        unit="ops",
    )
    b.add(
        "Signal → decision latency",
        _quantiles("vigil_signal_to_decision_seconds"),
        unit="s",
    )
    b.add(
        "Signal → decision latency heatmap",
        [(f"sum by (le) (rate(vigil_signal_to_decision_seconds_bucket[{RATE}]))", "{{le}}")],
        kind="heatmap",
        unit="s",
        options={"calculate": False, "yAxis": {"unit": "s"}, "color": {"scheme": "Oranges"}},
    )
    b.add(
        "Policy evaluation time",
        _quantiles("vigil_policy_evaluation_seconds"),
        unit="s",
    )
    b.add(
        "Check API latency",
        _quantiles("vigil_api_request_seconds", by="route"),
        unit="s",
        width=24,
    )
    return _dashboard(
        "vigil-overview",
        "Vigil — overview",
        "Rate, errors and duration of Vigil's decisions (RED).",
        b,
    )


def revocation_latency() -> dict[str, Any]:
    """Signal → revocation latency against its objective, and the error budget burn."""
    b = _Board()
    good = (
        f'sum(rate(vigil_signal_to_revocation_seconds_bucket{{{ARRIVAL},le="{OBJECTIVE_LE}"}}'
        f"[{RATE}])) / sum(rate(vigil_signal_to_revocation_seconds_count{{{ARRIVAL}}}[{RATE}]))"
    )
    b.add(
        "Signal → revocation latency (since arrival)",
        [
            *_quantiles("vigil_signal_to_revocation_seconds", ARRIVAL),
            (f"vector({OBJECTIVE_SECONDS})", "objective"),
        ],
        unit="s",
        thresholds=[("green", None), ("red", OBJECTIVE_SECONDS)],
        description=f"From a signal's Kafka timestamp to its revocations acknowledged; the "
        f"objective is {OBJECTIVE_RATIO:.0%} within {OBJECTIVE_SECONDS:g} s.",
    )
    b.add(
        "Signal → revocation latency (since event time)",
        _quantiles("vigil_signal_to_revocation_seconds", 'since="event_time"'),
        unit="s",
        description="Includes the producer's delay between the event and its signal.",
    )
    b.add(
        f"Revocations within {OBJECTIVE_SECONDS:g} s",
        [(good, "within objective"), (f"vector({OBJECTIVE_RATIO})", "objective")],
        unit="percentunit",
        thresholds=[("red", None), ("green", OBJECTIVE_RATIO)],
    )
    b.add(
        "Error budget burn rate",
        [(f"(1 - ({good})) / {1 - OBJECTIVE_RATIO:.4g}", "burn rate")],
        unit="short",
        thresholds=[("green", None), ("orange", 6), ("red", 14.4)],
        description="1 = the budget lasts exactly the objective's window; the alerts fire at "
        "14.4 (1 h and 5 m) and 6 (6 h and 30 m).",
    )
    b.add(
        "Revocations / s by cause and signal type",
        [
            (
                f"sum by (cause, signal_type) (rate(vigil_revocations_total[{RATE}]))",
                "{{cause}} {{signal_type}}",
            )
        ],
        unit="ops",
    )
    b.add(
        "Revocation latency heatmap",
        [
            (
                f"sum by (le) (rate(vigil_signal_to_revocation_seconds_bucket{{{ARRIVAL}}}"
                f"[{RATE}]))",
                "{{le}}",
            )
        ],
        kind="heatmap",
        unit="s",
        options={"calculate": False, "yAxis": {"unit": "s"}, "color": {"scheme": "Reds"}},
    )
    return _dashboard(
        "vigil-revocation-latency",
        "Vigil — revocation latency",
        "How fast a signal revokes what it should, against the objective.",
        b,
    )


def stream_health() -> dict[str, Any]:
    """Kafka side: lag, rebalances, throughput in and out, state and restore, policy state."""
    b = _Board()
    b.add(
        "Consumer lag by partition (records)",
        [
            (
                "sum by (topic, partition) (vigil_consumer_lag_records)",
                "{{topic}}/{{partition}}",
            )
        ],
        description="From the fetch responses' high watermark.",
    )
    b.add(
        "Throughput in / out",
        [
            (f"sum by (topic) (rate(vigil_signals_total[{RATE}]))", "in {{topic}}"),
            (
                f"sum(rate(vigil_grant_events_total[{RATE}]))",
                "in grants",
            ),
            (f"sum(rate(vigil_decisions_total[{RATE}]))", "out decisions"),
            (f"sum(rate(vigil_revocations_total[{RATE}]))", "out revocations"),
        ],
        unit="ops",
    )
    b.add(
        "Signals / s by outcome",
        [(f"sum by (outcome) (rate(vigil_signals_total[{RATE}]))", "{{outcome}}")],
        unit="ops",
        width=8,
    )
    b.add(
        "Rebalances",
        [(f"sum by (phase) (increase(vigil_rebalances_total[{RATE}]))", "{{phase}}")],
        width=8,
    )
    b.add(
        "Partitions owned by worker",
        [("sum by (instance) (vigil_assigned_partitions)", "{{instance}}")],
        width=8,
    )
    b.add(
        "Subjects and active grants",
        [
            ("sum(vigil_state_subjects)", "subjects"),
            ("sum(vigil_active_grants)", "active grants"),
        ],
        width=8,
    )
    b.add(
        "Changelog restore",
        [
            ("sum(vigil_changelog_restore_remaining_records)", "remaining"),
            (f"sum(rate(vigil_changelog_restored_records_total[{RATE}]))", "restored / s"),
        ],
        width=8,
    )
    b.add(
        "Batch time",
        _quantiles("vigil_batch_seconds"),
        unit="s",
        width=8,
    )
    b.add(
        "Running policy bundle",
        [("count by (digest) (vigil_policy_bundle_info)", "{{digest}}")],
        kind="table",
        width=8,
        description="Workers per bundle digest: more than one row = a rollout in progress.",
    )
    b.add(
        "Bundle switches, refusals and re-evaluation",
        [
            (f"sum(increase(vigil_policy_bundle_switches_total[{RATE}]))", "switches"),
            (f"sum(increase(vigil_policy_bundle_rejected_total[{RATE}]))", "refused"),
            ("sum(vigil_policy_reevaluation_pending_partitions)", "re-evaluating partitions"),
            ("max(vigil_policy_bundle_held)", "held"),
        ],
        width=8,
    )
    b.add(
        "Workers up",
        [('sum(up{job="vigil"})', "up")],
        kind="stat",
        width=8,
        thresholds=[("red", None), ("green", 1)],
    )
    return _dashboard(
        "vigil-stream-health",
        "Vigil — stream health",
        "Consumer lag, rebalances, throughput, state, restore and policy rollouts.",
        b,
    )


DASHBOARDS = {
    "vigil-overview.json": overview,
    "vigil-revocation-latency.json": revocation_latency,
    "vigil-stream-health.json": stream_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(make(), indent=2) + "\n" for name, make in DASHBOARDS.items()}


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) of every panel target and annotation of a dashboard."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield f"{dashboard['uid']}: {panel['title']} [{target['refId']}]", target["expr"]
    for ann in dashboard["annotations"]["list"]:
        if "expr" in ann:
            yield f"{dashboard['uid']}: annotation {ann['name']}", ann["expr"]


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(out / name, file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
