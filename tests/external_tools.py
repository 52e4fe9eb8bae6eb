"""Reference tools some tests run: the stock Cerbos PDP (npm, pinned version and checksum) and
Prometheus' ``promtool`` (Debian package ``prometheus``).

A test that cannot get its tool must not pass silently in CI: with ``CI`` set (CI runs
``.ci/run`` with ``CI=true``; ``.ci/tools`` installs npm and promtool first) a missing tool FAILS
the test. Outside CI it skips, with a reason that says the test did not run.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]

CERBOS_PACKAGE = "@cerbos/cerbos-linux-x64"
CERBOS_VERSION = "0.55.0"
# Of cerbos-cerbos-linux-x64-0.55.0.tgz as published; the npm registry's dist.integrity agrees.
CERBOS_TARBALL_SHA256 = "dab3152a1530bec16b945473e9aea9af493fee123c477c4196a990fad58656d1"
CERBOS_TARBALL_INTEGRITY = "sha512-eLZUycJfaQWK0XTRgH/Oz2E3XiNCUavDd1LhzFxhUpZ3s5CuQqmqG327ta0On8YOTxuZO/19cG4kvfC22r03/Q=="
CERBOS_DIR = REPO / ".venv" / f"cerbos-{CERBOS_VERSION}"
CERBOS_BINARY = CERBOS_DIR / "package" / "cerbos-linux-x64"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Fail in CI, skip (saying the test did NOT run) elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI must run this test; .ci/tools installs what it needs)")
    pytest.skip(f"NOT RUN (would fail in CI): {reason}")


def verify_cerbos_tarball(data: bytes) -> None:
    """Raise ValueError unless ``data`` is exactly the pinned Cerbos package tarball."""
    sha256 = hashlib.sha256(data).hexdigest()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if sha256 != CERBOS_TARBALL_SHA256 or integrity != CERBOS_TARBALL_INTEGRITY:
        raise ValueError(
            f"{CERBOS_PACKAGE}@{CERBOS_VERSION} tarball checksum mismatch: sha256 {sha256}, "
            f"{integrity}; expected sha256 {CERBOS_TARBALL_SHA256}"
        )


def cerbos_binary() -> Path:
    """The stock Cerbos PDP binary: ``npm pack`` of the pinned version, checksum-verified, cached
    under .venv/ (fails in CI, skips elsewhere, when it cannot be had)."""
    if CERBOS_BINARY.exists():
        return CERBOS_BINARY
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is not installed: cannot fetch the stock Cerbos PDP")
    CERBOS_DIR.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CERBOS_DIR.parent, prefix=".cerbos-") as tmp:
        try:
            subprocess.run(
                [npm, "pack", f"{CERBOS_PACKAGE}@{CERBOS_VERSION}"],
                cwd=tmp,
                check=True,
                capture_output=True,
                timeout=300,
            )
            tgz = next(Path(tmp).glob("cerbos-cerbos-linux-x64-*.tgz"))
        except (subprocess.SubprocessError, OSError, StopIteration) as exc:
            unavailable(f"npm pack {CERBOS_PACKAGE}@{CERBOS_VERSION} failed: {exc}")
        verify_cerbos_tarball(tgz.read_bytes())  # a wrong binary is an error, never a skip
        staged = Path(tmp) / "out"
        with tarfile.open(tgz) as tar:
            tar.extractall(staged, filter="data")
        (staged / "package" / "cerbos-linux-x64").chmod(0o755)
        if not CERBOS_BINARY.exists():  # another run (an xdist worker) may have won the race
            try:
                staged.rename(CERBOS_DIR)
            except OSError:
                if not CERBOS_BINARY.exists():
                    raise
    return CERBOS_BINARY


def promtool() -> str:
    """Path of ``promtool`` (fails in CI, skips elsewhere, when it is not installed)."""
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    return path


def prometheus() -> str:
    """Path of the ``prometheus`` server (same package and rule as ``promtool``)."""
    path = shutil.which("prometheus")
    if path is None:
        unavailable("prometheus is not installed (Debian package prometheus)")
    return path
