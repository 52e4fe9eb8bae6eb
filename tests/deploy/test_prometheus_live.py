"""Dashboards and alerts checked for real: a real ``prometheus`` scrapes two running workers
(one of them bound to another address through ``VIGIL_WEB_HOST``) under simulated load, then
every dashboard query and every rule expression goes through the Prometheus HTTP API. Each must
parse; each panel query must return data (deploy/README.md).

The load makes every series a panel shows exist: grants and signals (decisions, revocations,
signal→revocation latency), bad records (dead letters), a policy directory edit (a bundle
switch; its new policy's condition fails to evaluate: evaluation errors), a file that does not
compile (a refused bundle), check API calls. Set ``VIGIL_DASHBOARD_DATA=FILE`` to keep the
range data of the key panels (``make dashboard-images`` renders it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.observability.dashboards import DASHBOARDS, queries
from tests.deploy.live_prometheus import DEPLOY, Prometheus
from tests.external_tools import prometheus
from tests.pipeline.worker_harness import ROOT, Worker

FAULTY_POLICY = """\
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: faulty
  version: default
  rules:
    - name: reads-a-missing-attribute
      actions: ["read"]
      roles: ["*"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: R.attr.missing.deeper == "x"
"""
# Panels whose key series `make dashboard-images` draws (dashboard uid, panel title).
KEY_PANELS = [
    ("vigil-overview", "Decisions / s by effect"),
    ("vigil-overview", "Signal → decision latency"),
    ("vigil-revocation-latency", "Signal → revocation latency (since arrival)"),
    ("vigil-stream-health", "Throughput in / out"),
    ("vigil-revocation-latency", "Revocations / s by cause and signal type"),
    ("vigil-overview", "Dead letters / s by error"),
]


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def grant(gid: str, user: str, kind: str = "document") -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "op": "issued",
        "grant_id": gid,
        "principal": {"id": user, "type": "user", "roles": ["employee"], "attr": {}},
        "resource": {"kind": kind, "id": "doc-1", "attr": {}},
        "actions": ["read"],
        "session_id": "s1",
        "device_id": "D1",
        "issued_at": iso(now),
        "expires_at": iso(now + timedelta(hours=1)),
    }


def risk(user: str, level: str) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": "risk-level-change",
        "subject": {"type": "user", "id": user},
        "source": "ueba",
        "event_time": iso(datetime.now(UTC) - timedelta(milliseconds=50)),
        "attributes": {"current_level": level},
    }


def check(worker: Worker, user: str) -> int:
    body = {
        "requestId": uuid.uuid4().hex,
        "principal": {"id": user, "roles": ["employee"], "attr": {}},
        "resources": [{"actions": ["read"], "resource": {"kind": "document", "id": "d1"}}],
    }
    request = urllib.request.Request(
        f"{worker.api_url}/api/check/resources", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return int(resp.status)


async def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.5)


async def load(workers: list[Worker], rounds: int, users_per_round: int = 4) -> None:
    """A few grants and signals per round: allowed, revoked by risk, faulty; bad records."""
    first = workers[0]
    for n in range(rounds):
        users = [f"u{n}-{i}-{uuid.uuid4().hex[:4]}" for i in range(users_per_round)]
        await first.produce("grants", [grant(f"g-{u}", u) for u in users])
        await first.produce("grants", [grant(f"f-{u}", u, "faulty") for u in users[:1]])
        await first.produce("risk", [risk(u, "LOW") for u in users])
        await first.produce("risk", [risk(u, "HIGH") for u in users[: len(users) // 2]])
        await first.produce_raw("risk", f"user:{users[0]}".encode(), b"{not json")
        for worker in workers:
            await asyncio.to_thread(check, worker, users[0])
        await asyncio.sleep(0.5)


async def test_every_panel_query_returns_data_and_every_rule_parses(
    start_worker: Callable[..., Worker], tmp_path: Path
) -> None:
    binary = prometheus()  # fails in CI, skips elsewhere, when it is not installed
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    first = start_worker()
    first.policies = policies
    second = start_worker(like=first)
    second.policies = policies
    second.web_host = "127.0.0.2"  # VIGIL_WEB_HOST: the listener binds there, not on .1
    await first.start()
    await second.start()
    with pytest.raises(OSError):  # the second worker is not on 127.0.0.1
        urllib.request.urlopen(f"http://127.0.0.1:{second.web_port}/metrics", timeout=2)

    server = Prometheus(
        binary,
        tmp_path,
        [f"{w.web_host}:{w.web_port}" for w in (first, second)],
    )
    server.start()
    try:
        await wait_for(
            "both workers scraped",
            lambda: list(server.targets_up().values()) == ["up", "up"],
        )
        started = time.time()
        (policies / "faulty.yaml").write_text(FAULTY_POLICY)  # a switch, source "directory"
        await wait_for(
            "bundle switch on both workers",
            lambda: all(
                w.metric("vigil_policy_bundle_switches_total") > 0 for w in (first, second)
            ),
        )
        keep = os.environ.get("VIGIL_DASHBOARD_DATA")
        # pictures want a longer, busier run than the check needs
        rounds, users = (90, 20) if keep else (12, 4)
        await load([first, second], rounds, users)
        (policies / "broken.yaml").write_text("resourcePolicy: [not, a, policy]\n")
        await wait_for(
            "refused bundle",
            lambda: any(
                w.metric("vigil_policy_bundle_rejected_total") > 0 for w in (first, second)
            ),
        )
        await load([first, second], rounds=4)
        await first.wait_processed()
        await asyncio.sleep(2.5)  # a last scrape of everything the load caused

        failures = []
        for make in DASHBOARDS.values():
            dashboard = make()
            for where, expr in queries(dashboard):
                answer = server.query(expr)
                if answer.get("status") != "success":
                    failures.append(f"{where}: {answer.get('error')}")
                elif not answer["data"]["result"] and "annotation" not in where:
                    failures.append(f"{where}: no data for {expr}")
        assert not failures, "\n".join(failures)

        # "returns data" must not be a zero that a gauge or NaN quantile always gives
        for expr in (
            "sum(vigil_state_subjects)",
            'sum(vigil_signal_to_revocation_seconds_count{since="arrival"})',
            'sum(vigil_signal_to_revocation_seconds_count{since="event_time"})',
            "sum(vigil_rebalances_total)",
            "sum(vigil_evaluation_errors_total)",
            'sum(vigil_signals_total{outcome="dead-lettered"})',
            "sum(vigil_api_requests_total)",
            'count(count by (instance) (up{job="vigil"} == 1))',
        ):
            result = server.query(expr)["data"]["result"]
            assert result and float(result[0]["value"][1]) > 0, expr

        rules = yaml.safe_load((DEPLOY / "vigil-alerts.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                answer = server.query(rule["expr"])
                assert answer.get("status") == "success", (rule, answer)
        loaded = server.api("/api/v1/rules")["data"]["groups"]
        health = {
            r["name"]: (r["health"], r.get("lastError", "")) for g in loaded for r in g["rules"]
        }
        total = sum(len(g["rules"]) for g in rules["groups"])
        assert len(health) == total and {h for h, _ in health.values()} == {"ok"}, health

        if keep:
            save_key_panels(server, Path(keep), started, time.time())
    finally:
        server.stop()


def save_key_panels(server: Prometheus, out: Path, start: float, end: float) -> None:
    """Range data of ``KEY_PANELS`` as Grafana would fetch it, for docs/images/."""
    boards = {d["uid"]: d for d in (make() for make in DASHBOARDS.values())}
    panels = []
    for uid, title in KEY_PANELS:
        panel = next(p for p in boards[uid]["panels"] if p["title"] == title)
        series = []
        for target in panel["targets"]:
            answer = server.query_range(target["expr"], start, end, 1)
            for result in answer["data"]["result"]:
                legend = target["legendFormat"]
                for name, value in result["metric"].items():
                    legend = legend.replace("{{" + name + "}}", value)
                series.append({"legend": legend, "values": result["values"]})
        unit = panel["fieldConfig"]["defaults"]["unit"]
        panels.append({"dashboard": uid, "title": title, "unit": unit, "series": series})
    out.write_text(json.dumps({"start": start, "end": end, "panels": panels}, indent=1))
