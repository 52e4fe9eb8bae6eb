"""The rules of tests/external_tools.py: a missing reference tool fails in CI, and only the
pinned Cerbos tarball is accepted."""

from __future__ import annotations

import pytest

from tests.external_tools import unavailable, verify_cerbos_tarball


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_tool_fails_in_ci(ci: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match="CI must run this test"):
        unavailable("no npm")


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_missing_tool_skips_outside_ci(ci: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="NOT RUN"):
        unavailable("no npm")


def test_only_the_pinned_cerbos_tarball_is_accepted() -> None:
    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_cerbos_tarball(b"not the cerbos package")
