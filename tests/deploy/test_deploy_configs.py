"""Dashboards and alerts must only use metrics the worker really exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

import streams.metrics  # noqa: F401  (registers the metrics)
from streams.observability.dashboards import DATASOURCE_UID, queries, render
from tests.external_tools import promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def exported() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
    return {n for n in names if n.startswith("vigil_")}


def used(text: str) -> set[str]:
    return set(re.findall(r"\bvigil_[a-z_]+", text))


def dashboards() -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text())
        for p in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    ]


def expressions() -> list[str]:
    exprs = [expr for d in dashboards() for _, expr in queries(d)]
    alerts = yaml.safe_load((DEPLOY / "vigil-alerts.yml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    return exprs


def test_every_metric_in_dashboards_and_alerts_is_exported() -> None:
    names = exported()
    missing = set()
    for expr in expressions():
        for name in used(expr):
            if name not in names and not any(name.removesuffix(s) in names for s in SUFFIXES):
                missing.add(name)
    assert not missing, f"unknown metrics: {sorted(missing)}"


def test_promtool_accepts_config_and_rules() -> None:
    tool = promtool()  # fails in CI, skips elsewhere, when promtool is not installed
    for args in (
        ["check", "rules", "vigil-alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "vigil-alerts.test.yml"],
    ):
        run = subprocess.run([tool, *args], cwd=DEPLOY, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_files_are_what_the_generator_makes() -> None:
    files = {p.name: p.read_text() for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}
    assert files == render(), "run `make dashboards` and commit deploy/grafana/dashboards/"


def test_dashboards_use_the_provisioned_datasource_and_no_inputs() -> None:
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "vigil.yaml").read_text()
    )
    assert [d["uid"] for d in provisioned["datasources"]] == [DATASOURCE_UID]
    for dash in dashboards():
        text = json.dumps(dash)
        assert "__inputs" not in text and "${DS_" not in text
        uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
        uids |= {p["datasource"]["uid"] for p in dash["panels"]}
        assert uids == {DATASOURCE_UID}, dash["uid"]
        names = [a["name"] for a in dash["annotations"]["list"]]
        assert "Policy rollouts" in names, dash["uid"]


def test_every_alert_has_a_unit_test() -> None:
    alerts = yaml.safe_load((DEPLOY / "vigil-alerts.yml").read_text())
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((DEPLOY / "vigil-alerts.test.yml").read_text())
    tested = {
        t["alertname"]
        for case in tests["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert names - tested == set(), "alerts without a firing unit test"


def test_readme_shows_rendered_panels_that_exist() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    images = re.findall(r"\(docs/images/(panel-[a-z0-9-]+\.png)\)", readme)
    assert len(images) >= 4
    missing = [i for i in images if not (DEPLOY.parent / "docs" / "images" / i).is_file()]
    assert not missing, "run `make dashboard-images` and commit docs/images/"
