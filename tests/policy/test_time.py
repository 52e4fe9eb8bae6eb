"""Time in policies: rule outputs get `now()`, and the engine knows which checks read the clock
(the pipeline re-evaluates those grants as time passes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from streams.policy import PolicyEngine
from streams.policy.deps import reads_clock

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)

OUTPUT_ONLY = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: clockless
  version: default
  rules:
    - name: stamp
      actions: ["read"]
      roles: ["*"]
      effect: EFFECT_ALLOW
      output:
        when:
          ruleActivated: string(now())
"""

TIMED = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: timed
  version: default
  rules:
    - actions: ["read"]
      roles: ["*"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: timeSince(timestamp(P.attr.since)) < duration("5s")
"""

PLAIN = """
apiVersion: api.cerbos.dev/v1
resourcePolicy:
  resource: plain
  version: default
  rules:
    - actions: ["read"]
      roles: ["*"]
      effect: EFFECT_ALLOW
      condition:
        match:
          expr: P.attr.status != "unknown" && P.attr.note != "now"
"""

PRINCIPAL_TIMED = """
apiVersion: api.cerbos.dev/v1
principalPolicy:
  principal: alice
  version: default
  rules:
    - resource: "report*"
      actions:
        - action: "read"
          effect: EFFECT_DENY
          condition:
            match:
              expr: now() > timestamp("2030-01-01T00:00:00Z")
"""


@pytest.fixture
def timed_engine(make_bundle: Callable[[dict[str, str]], Path]) -> PolicyEngine:
    directory = make_bundle(
        {
            "output.yaml": OUTPUT_ONLY,
            "timed.yaml": TIMED,
            "plain.yaml": PLAIN,
            "principal.yaml": PRINCIPAL_TIMED,
        }
    )
    return PolicyEngine.from_directory(directory)


def test_an_output_calling_now_gets_the_time_without_any_condition_reading_it(
    make_bundle: Callable[[dict[str, str]], Path],
) -> None:
    engine = PolicyEngine.from_directory(make_bundle({"output.yaml": OUTPUT_ONLY}))
    principal = {"id": "alice", "roles": ["user"], "attr": {}}
    result = engine.check(principal, {"kind": "clockless", "id": "x"}, ["read"], now=NOW)
    [out] = result.outputs
    assert out.val == "2026-11-30T12:00:00Z"


def test_reads_time_follows_conditions_outputs_and_principal_rules(
    timed_engine: PolicyEngine,
) -> None:
    assert timed_engine.reads_time("timed")
    assert timed_engine.reads_time("clockless")  # the output reads the clock
    assert timed_engine.reads_time("report-2026")  # a principal rule matching the kind
    assert not timed_engine.reads_time("plain")  # "unknown"/"now" as data are not the clock
    assert not timed_engine.reads_time("other")


def test_the_default_bundle_reads_no_time() -> None:
    """The shipped policies cost no time re-evaluation (docs/concepts.md)."""
    engine = PolicyEngine.from_directory(Path(__file__).resolve().parents[2] / "policies")
    assert not engine.reads_time("document") and not engine.reads_time("tool")


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("now() < timestamp(P.attr.t)", True),
        ("timestamp(P.attr.t).timeSince() > duration('1h')", True),
        ("P.attr.status == 'now'", False),
        ("P.attr.known // now()\n", False),
        ("P.attr.`x`", True),  # not followed: conservative
    ],
)
def test_reads_clock(src: str, expected: bool) -> None:
    assert reads_clock(src) is expected
