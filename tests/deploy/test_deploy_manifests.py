"""deploy/compose.yaml and deploy/kubernetes/ validated against their published schemas, offline:
the Compose Specification schema vendored in ``check-jsonschema`` and the Kubernetes OpenAPI
schemas shipped in ``kubernetes-validate`` (both PyPI); plus the production settings the
deployment promises (docs/operations.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.external_tools import promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent
INPUT_TOPICS = ["signals.identity", "signals.device", "signals.network", "signals.risk"]


def run(*args: str | Path, cwd: Path = DEPLOY) -> None:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def test_compose_file_matches_the_compose_spec() -> None:
    run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml")


def test_compose_runs_a_replicated_kraft_cluster_and_creates_topics_first() -> None:
    services = compose()["services"]
    kafka = {n: s for n, s in services.items() if n.startswith("kafka-") and n != "kafka-init"}
    assert len(kafka) == 3
    for service in kafka.values():
        env = service["environment"]
        assert service["image"].startswith("apache/kafka:")
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    script = services["kafka-init"]["command"][0]
    assert "--replication-factor 3" in script and "min.insync.replicas=2" in script
    for topic in [*INPUT_TOPICS, "authz.grants", "vigil.state-changelog"]:
        assert topic in script
    assert "--topic vigil.state-changelog --partitions 12 --config cleanup.policy=compact" in script
    workers = {n: s for n, s in services.items() if n.startswith("vigil-")}
    assert len(workers) >= 2
    for service in workers.values():
        cond = service["depends_on"]["kafka-init"]["condition"]
        assert cond == "service_completed_successfully"
        assert service["environment"]["VIGIL_WEB_HOST"] == "0.0.0.0"
        assert service["environment"]["VIGIL_PARTITIONS"] == "12"
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(targets) == sorted(f"{n}:6066" for n in workers)
    mounts = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    run(BIN / "kubernetes-validate", "--strict", "--quiet", "kubernetes/vigil.yaml")


def test_kubernetes_statefulset_waits_for_restore_and_keeps_state() -> None:
    manifests = yaml.safe_load_all((DEPLOY / "kubernetes" / "vigil.yaml").read_text())
    docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in manifests}
    sts = docs["StatefulSet/vigil"]["spec"]
    container = sts["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"]["requests"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert env["VIGIL_DATA_DIR"] == mount["mountPath"]
    assert env["VIGIL_WEB_HOST"] == "0.0.0.0"
    assert sts["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert docs["Service/vigil"]["spec"]["clusterIP"] == "None"
    assert docs["PodDisruptionBudget/vigil"]["spec"]["maxUnavailable"] == 1


def test_kubernetes_scrape_config_is_valid() -> None:
    run(promtool(), "check", "config", "prometheus.yml", cwd=DEPLOY / "kubernetes")
