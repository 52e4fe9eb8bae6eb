"""A real ``prometheus`` server for tests: scrapes given targets, loads the deploy/ rules, and
answers PromQL over its HTTP API."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from streams.kafka.broker import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RATE_INTERVAL = "30s"  # what Grafana's $__rate_interval becomes at a 1 s scrape interval


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(DEPLOY / "vigil-alerts.yml")],
                    "scrape_configs": [
                        {
                            "job_name": "vigil",
                            "metrics_path": "/metrics",
                            "static_configs": [{"targets": targets}],
                        }
                    ],
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready: {self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        """GET an API path; the JSON body (also for 4xx answers, which carry the error)."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=grafana_to_promql(expr))

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        return self.api(
            "/api/v1/query_range", query=grafana_to_promql(expr), start=start, end=end, step=step
        )

    def targets_up(self) -> dict[str, str]:
        body = self.api("/api/v1/targets")
        return {t["scrapeUrl"]: t["health"] for t in body["data"]["activeTargets"]}


def grafana_to_promql(expr: str) -> str:
    """Grafana's macros replaced the way Grafana does before it sends a query."""
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__interval", "5s")
