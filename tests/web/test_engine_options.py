"""The worker's engine settings apply to every bundle it runs: the one it starts with, a pushed
bundle and an edited policy directory (so a check always means the same under every bundle)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.bundles.bundle import Bundle
from streams.bundles.watcher import BundleWatcher
from streams.settings import Settings

POLICY = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: gadget
  version: default
  rules:
    - actions: ["use"]
      roles: ["*"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: G.open == true
"""
OPTIONS = Settings(globals={"open": True}).engine_options


def _allowed(engine: object) -> bool:
    result = engine.check(  # type: ignore[attr-defined]
        {"id": "u", "roles": ["r"], "attr": {}}, {"kind": "gadget", "id": "g", "attr": {}}, ["use"]
    )
    return bool(result.actions["use"].effect == "EFFECT_ALLOW")


def test_pushed_bundle_compiles_with_the_worker_globals(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "gadget.yaml").write_text(POLICY)
    bundle = Bundle.from_bytes(Bundle.from_directory(tmp_path / "p").to_bytes())
    assert _allowed(bundle.compile(tmp_path / "w1", **OPTIONS))
    assert not _allowed(bundle.compile(tmp_path / "w2"))


async def test_edited_directory_compiles_with_the_worker_globals(tmp_path: Path) -> None:
    policies = tmp_path / "p"
    policies.mkdir()
    watcher = BundleWatcher(
        bootstrap="127.0.0.1:1",
        topic="unused",
        policies_dir=policies,
        workdir=tmp_path / "w",
        running_digest="none",
        poll_seconds=0.05,
        engine_options=OPTIONS,
    )
    task = asyncio.create_task(watcher._watch_directory(policies))
    try:
        (policies / "gadget.yaml").write_text(POLICY)
        for _ in range(200):
            update = watcher.poll()
            if update is not None:
                break
            await asyncio.sleep(0.05)
        assert update is not None and _allowed(update.engine)
    finally:
        task.cancel()
