"""`vigil worker --ssf-config`: a config that is not exactly valid stops the worker at start,
before it connects anywhere (exit 2, the file and the path of the problem)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _worker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker", "--broker", "127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "VIGIL_DATA_DIR": ":memory:", **(env or {})},
        timeout=60,
    )


def test_bad_ssf_config_stops_the_worker(tmp_path: Path) -> None:
    config = tmp_path / "ssf.yaml"
    config.write_text(
        'audience: "https://vigil.example.com/"\n'
        "transmitters:\n"
        "  - name: idp\n"
        '    issuer: "https://idp.example.com/"\n'
        "    jwks_uri: /nonexistent/jwks.json\n"
        '    push_authorization: "Bearer ${SSF_TEST_UNSET_VARIABLE}"\n'
    )
    proc = _worker("--ssf-config", str(config))
    assert proc.returncode == 2, proc.stderr
    assert "ssf.yaml" in proc.stderr and "SSF_TEST_UNSET_VARIABLE" in proc.stderr
    proc = _worker(
        env={"VIGIL_SSF_CONFIG": str(config), "SSF_TEST_UNSET_VARIABLE": "x", "VIGIL_API_PORT": "0"}
    )
    assert proc.returncode == 2 and "--api-port is 0" in proc.stderr
