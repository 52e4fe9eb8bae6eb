"""`vigil worker` check API settings: a bad token file or TLS setting stops the worker before it
connects anywhere; `--api-port 0` turns the API off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.app import PipelineService, build_pipeline
from streams.kafka.security import PLAINTEXT
from streams.settings import Settings
from streams.web.service import CheckApiService

ROOT = Path(__file__).resolve().parents[2]


def _worker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--broker", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_bad_token_file_stops_the_worker(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens:\n  - name: a\n    token: short\n")
    proc = _worker("--api-tokens", str(bad), "--data-dir", ":memory:")
    assert proc.returncode == 2, proc.stderr
    assert "tokens.yaml" in proc.stderr and "token" in proc.stderr


def test_api_tls_halves_go_together(tmp_path: Path) -> None:
    proc = _worker(env={"VIGIL_API_TLS_CERTFILE": str(tmp_path / "c.pem")})
    assert proc.returncode == 2
    assert "VIGIL_API_TLS_KEYFILE" in proc.stderr


@pytest.mark.parametrize(("port", "on"), [(0, False), (3592, True)])
def test_api_port_zero_turns_the_api_off(port: int, on: bool) -> None:
    settings = Settings(api_port=port, data_dir=Path(":memory:"), policies=ROOT / "policies")
    service = PipelineService(settings, build_pipeline(settings), PLAINTEXT)
    assert isinstance(service.api, CheckApiService) is on


def test_bad_webhook_file_stops_the_worker(tmp_path: Path) -> None:
    bad = tmp_path / "webhooks.yaml"
    bad.write_text("webhooks:\n  - name: a\n    url: http://x/\n    secret: not-whsec\n")
    for args, env in (
        (["--webhooks", str(bad)], None),
        ([], {"VIGIL_WEBHOOKS": str(bad)}),
    ):
        proc = _worker(*args, "--data-dir", ":memory:", env=env)
        assert proc.returncode == 2, proc.stderr
        assert "webhooks.yaml" in proc.stderr and "whsec_" in proc.stderr
