"""policies/mailbox.yaml (delegation): each refusal is decided by the DENY rule that names its
reason (the `rule` of decisions and revocations), with the principals of its Cerbos suite, and
without evaluation errors (they would be recorded in every decision: users have no initiator,
checks no grant time)."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from streams.policy import PolicyEngine

from .conftest import POLICIES

SUITE = yaml.safe_load((POLICIES / "tests" / "mailbox_test.yaml").read_text())
MAILBOX = SUITE["resources"]["alice_mailbox"]
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

CASES: list[tuple[str, str | None]] = [
    ("subbot_depth_3", "deny-delegation-too-deep"),
    ("bot_initiator_high_risk", "deny-initiator-high-risk"),
    ("bot_after_credential_change", "deny-initiator-credential-changed"),
    ("bot_high_risk", "deny-high-risk"),
    ("bot_compromised", "deny-compromised-credential"),
    ("bot_revoked_session", "deny-revoked-session"),
    ("mail_alice_revoked", "deny-revoked-session"),
    ("bot_check_after_credential_change", None),
]


@pytest.mark.parametrize(("name", "rule"), CASES, ids=[c[0] for c in CASES])
def test_refusals_name_their_reason(engine: PolicyEngine, name: str, rule: str | None) -> None:
    result = engine.check(SUITE["principals"][name], MAILBOX, ["read", "send", "triage"], now=NOW)
    assert {a: (r.effect, r.rule) for a, r in result.actions.items()} == {
        a: ("EFFECT_DENY", rule) for a in ("read", "send", "triage")
    }
    assert result.errors == []


def test_explicit_grant_is_the_only_way_past_the_users_authority(engine: PolicyEngine) -> None:
    result = engine.check(SUITE["principals"]["bot_for_cora"], MAILBOX, ["send", "triage"], now=NOW)
    assert (result.actions["send"].effect, result.actions["send"].rule) == ("EFFECT_DENY", None)
    assert (result.actions["triage"].effect, result.actions["triage"].rule) == (
        "EFFECT_ALLOW",
        "agent-triage",
    )
