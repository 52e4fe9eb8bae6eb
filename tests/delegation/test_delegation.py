"""Delegation across subjects, broker-free: grants joined to their ``on_behalf_of`` members
through the subscriptions topic, member state in ``request.principal.attr.delegation``, and the
cascade. Every scenario runs with its subjects on one partition and spread over several."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.models.grant import validate_grant_event
from streams.processing.pipeline import Pipeline
from streams.state.replica import partition_of
from tests.delegation.cluster import (
    SUBSCRIPTIONS,
    TOPICS,
    Cluster,
    delegation_pipeline,
    issued,
    placed,
    signal,
)

PARTITIONS = 4
LATER = "2026-11-29T10:30:00Z"


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return delegation_pipeline()


Subjects = Callable[..., list[str]]


@pytest.fixture(params=["one-partition", "spread"])
def subjects(request: pytest.FixtureRequest) -> Subjects:
    """``subjects("user:alice", "agent:mail-bot")``: keys on one partition, or on pairwise
    different partitions (checked), so each scenario runs both ways."""
    distinct = request.param == "spread"

    def make(*bases: str) -> list[str]:
        keys = placed(list(bases), PARTITIONS, distinct)
        parts = {partition_of(k.encode(), PARTITIONS) for k in keys}
        assert len(parts) == (len(keys) if distinct else 1)
        return keys

    return make


def test_a_users_credential_change_revokes_only_the_grants_delegated_by_that_user(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bob, bot = subjects("user:alice", "user:bob", "agent:mail-bot")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", bot, issued("for-alice", bot, [alice]))
    c.send("authz.grants", bot, issued("for-bob", bot, [bob]))
    c.settle()
    assert c.revoked() == {}
    c.send(
        "signals.identity",
        alice,
        signal("cc-1", alice, "credential-change", LATER, credential_type="password"),
    )
    c.settle()
    revoked = c.revoked()
    assert list(revoked) == ["for-alice"]
    rev = revoked["for-alice"]
    assert rev["subject"] == bot
    assert rev["rule"] == "deny-delegator-credential-changed"
    assert rev["cause"]["kind"] == "signal"
    assert rev["cause"]["event_id"] == "cc-1"
    assert rev["cause"]["signal_type"] == "credential-change"
    assert rev["cause"]["root_cause"] == "cc-1"
    assert rev["cause"]["path"] == [alice, bot]
    # the decision shows what the policy saw: the initiator's live state
    denial = next(d for d in c.outputs("authz.decisions") if d["decision_id"] == rev["decision_id"])
    delegation = denial["request"]["principal"]["attr"]["delegation"]
    assert delegation["depth"] == 1
    initiator = delegation["initiator"]
    assert (initiator["type"], initiator["id"]) == tuple(alice.split(":", 1))
    assert initiator["signals"]["identity"]["credential_changed_at"] == "2026-11-29T10:30:00.000Z"
    assert delegation["chain"] == [initiator]


def test_the_member_replica_and_subscriptions_go_when_grants_end(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot = subjects("user:alice", "agent:mail-bot")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", bot, issued("g1", bot, [alice]))
    c.settle()
    assert c.state(alice)["subscribers"] == {"g1": [bot, None]}
    assert list(c.state(bot)["members"]) == [alice]
    c.send("authz.grants", bot, {"op": "released", "grant_id": "g1", **_principal(bot)})
    c.settle()
    assert c.state(alice).get("subscribers", {}) == {}  # the emptied state is deleted
    assert c.state(bot)["members"] == {}


def test_a_state_that_arrives_after_its_grant_ended_is_not_kept(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot = subjects("user:alice", "agent:mail-bot")
    c = Cluster(pipeline, PARTITIONS)
    # issued and released in one batch: alice's answer to the subscription arrives afterwards
    c.send("authz.grants", bot, issued("g1", bot, [alice]))
    c.send("authz.grants", bot, {"op": "released", "grant_id": "g1", **_principal(bot)})
    c.settle()
    assert c.state(bot).get("members", {}) == {}
    assert c.state(alice).get("subscribers", {}) == {}  # the emptied state is deleted


def test_a_device_going_non_compliant_revokes_the_grants_of_every_user_on_it(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    """A signal whose subject is the device itself reaches every grant bound to that device,
    whichever user holds it and on whichever partition."""
    alice, bob, carol, device = subjects("user:alice", "user:bob", "user:carol", "device:D")
    d = device.split(":", 1)[1]
    c = Cluster(pipeline, PARTITIONS)
    for user, dev in ((alice, d), (bob, d), (carol, "other")):
        at = "2026-11-29T08:00:00Z"
        c.send(
            "signals.device",
            user,
            signal(
                f"ok-{user}",
                user,
                "device-compliance-change",
                at,
                device_id=dev,
                current_status="compliant",
            ),
        )
    c.settle()
    for gid, user, dev in (("g-a", alice, d), ("g-b", bob, d), ("g-c", carol, "other")):
        c.send(
            "authz.grants", user, {**issued(gid, user), "device_id": dev, "session_id": f"s-{gid}"}
        )
    c.settle()
    assert c.revoked() == {}
    c.send(
        "signals.device",
        device,
        signal(
            "nc-1",
            device,
            "device-compliance-change",
            LATER,
            device_id=d,
            current_status="not-compliant",
        ),
    )
    c.settle()
    revoked = c.revoked()
    assert sorted(revoked) == ["g-a", "g-b"]
    for gid, user in (("g-a", alice), ("g-b", bob)):
        assert revoked[gid]["rule"] == "deny-noncompliant-device"
        assert revoked[gid]["session_id"] == f"s-{gid}"
        assert revoked[gid]["cause"]["event_id"] == "nc-1"
        assert revoked[gid]["cause"]["path"] == [device, user]
    # an older device-subject event changes nothing: the newer entry wins either way
    c.send(
        "signals.device",
        device,
        signal(
            "ok-old",
            device,
            "device-compliance-change",
            "2026-11-29T07:00:00Z",
            device_id=d,
            current_status="compliant",
        ),
    )
    c.settle()
    assert sorted(c.revoked()) == ["g-a", "g-b"]


def test_a_device_subject_older_than_the_users_own_entry_does_not_override_it(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, device = subjects("user:alice", "device:D")
    d = device.split(":", 1)[1]
    c = Cluster(pipeline, PARTITIONS)
    c.send(
        "signals.device",
        device,
        signal(
            "old",
            device,
            "device-compliance-change",
            "2026-11-29T07:00:00Z",
            device_id=d,
            current_status="not-compliant",
        ),
    )
    c.send(
        "signals.device",
        alice,
        signal(
            "new",
            alice,
            "device-compliance-change",
            "2026-11-29T08:00:00Z",
            device_id=d,
            current_status="compliant",
        ),
    )
    c.settle()
    c.send("authz.grants", alice, {**issued("g", alice), "device_id": d})
    c.settle()
    assert c.revoked() == {}


def _principal(key: str) -> dict[str, object]:
    kind, ident = key.split(":", 1)
    return {"principal": {"id": ident, "type": kind, "roles": [kind]}}


def test_a_three_level_chain_cascades_from_the_root_delegation(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot, helper, sub = subjects("user:alice", "agent:mail-bot", "agent:helper", "agent:sub")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", alice, issued("d", alice, roles=["user"]))
    c.settle()
    c.send("authz.grants", bot, issued("g1", bot, [alice], parent="d"))
    c.settle()
    c.send("authz.grants", helper, issued("g2", helper, [alice, bot], parent="g1"))
    c.settle()
    c.send("authz.grants", sub, issued("g3", sub, [alice, bot, helper], parent="g2"))
    c.settle()
    # an unrelated grant of the sub-agent, made for alice but under no delegation grant
    c.send("authz.grants", sub, issued("own", sub, [alice]))
    c.settle()
    assert c.revoked() == {}
    # alice's risk goes HIGH: her own grant "d" is revoked by policy, and everything made under
    # it follows, each naming the original signal and its path of grants
    c.send(
        "signals.risk",
        alice,
        signal("r-1", alice, "risk-level-change", LATER, current_level="HIGH"),
    )
    c.settle()
    revoked = c.revoked()
    assert sorted(revoked) == ["d", "g1", "g2", "g3"]
    assert revoked["d"]["cause"]["event_id"] == "r-1"
    assert revoked["d"]["rule"] == "deny-high-risk"
    for gid, path in (
        ("g1", ["d", "g1"]),
        ("g2", ["d", "g1", "g2"]),
        ("g3", ["d", "g1", "g2", "g3"]),
    ):
        cause = revoked[gid]["cause"]
        assert cause["kind"] == "cascade"
        assert cause["root_cause"] == "r-1"
        assert cause["path"] == path
        assert revoked[gid]["rule"] == "vigil.delegation.cascade"
        assert revoked[gid]["denied_actions"] == ["read", "send"]


def test_releasing_the_root_delegation_cascades_and_names_the_root_grant(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot, helper = subjects("user:alice", "agent:mail-bot", "agent:helper")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", alice, issued("d", alice, roles=["user"]))
    c.settle()
    c.send("authz.grants", bot, issued("g1", bot, [alice], parent="d"))
    c.settle()
    c.send("authz.grants", helper, issued("g2", helper, [alice, bot], parent="g1"))
    c.settle()
    c.send("authz.grants", alice, {"op": "released", "grant_id": "d", **_principal(alice)})
    c.settle()
    revoked = c.revoked()
    assert sorted(revoked) == ["g1", "g2"]
    assert revoked["g2"]["cause"] == {
        "kind": "cascade",
        "event_id": "d",
        "root_cause": "d",
        "path": ["d", "g1", "g2"],
    }


def test_a_grant_under_a_delegation_that_is_not_active_is_revoked(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot = subjects("user:alice", "agent:mail-bot")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", bot, issued("g1", bot, [alice], parent="never-issued"))
    c.settle()
    revoked = c.revoked()
    assert list(revoked) == ["g1"]
    assert revoked["g1"]["cause"]["path"] == ["never-issued", "g1"]


@pytest.mark.parametrize("kind", ["account-disabled", "credential-compromise"])
def test_a_disabled_or_compromised_member_revokes_every_grant_under_it_in_one_pass(
    pipeline: Pipeline, subjects: Subjects, kind: str
) -> None:
    alice, bot, helper, carol = subjects(
        "user:alice", "agent:mail-bot", "agent:helper", "user:carol"
    )
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", bot, issued("g1", bot, [alice]))
    c.send("authz.grants", helper, issued("g2", helper, [alice, bot]))
    c.send("authz.grants", helper, issued("g3", helper, [carol, bot]))
    c.settle()
    c.send("signals.identity", bot, signal("x-1", bot, kind, LATER))
    c.settle()
    revoked = c.revoked()
    # bot's own grant g1 is its policies' matter (the risk model makes a disabled or compromised
    # subject HIGH risk, which the test policy denies); the grants made under bot end whatever
    # the policies say
    assert sorted(revoked) == ["g1", "g2", "g3"]
    assert revoked["g1"]["rule"] == "deny-high-risk"
    assert "path" not in revoked["g1"]["cause"]
    rule = "member-disabled" if kind == "account-disabled" else "member-compromised"
    for gid in ("g2", "g3"):
        assert revoked[gid]["rule"] == f"vigil.delegation.{rule}"
        # one pass: each grant subscribed to bot itself, so the signal reached it directly
        # (cause signal, not a cascade through g1)
        assert revoked[gid]["cause"]["kind"] == "signal"
        assert revoked[gid]["cause"]["root_cause"] == "x-1"
        assert revoked[gid]["cause"]["path"] == [bot, helper]


def test_an_agents_own_risk_change_affects_only_its_own_grants(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot, other = subjects("user:alice", "agent:mail-bot", "agent:other")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", alice, issued("alice-own", alice, roles=["user"]))
    c.send("authz.grants", bot, issued("bot-for-alice", bot, [alice]))
    c.send("authz.grants", other, issued("other-for-alice", other, [alice]))
    c.settle()
    c.send(
        "signals.risk", bot, signal("r-bot", bot, "risk-level-change", LATER, current_level="HIGH")
    )
    c.settle()
    revoked = c.revoked()
    assert list(revoked) == ["bot-for-alice"]
    assert revoked["bot-for-alice"]["cause"] == {
        "kind": "signal",
        "event_id": "r-bot",
        "signal_type": "risk-level-change",
    }
    by_signal = [
        d["grant_id"] for d in c.outputs("authz.decisions") if d["cause"]["event_id"] == "r-bot"
    ]
    assert by_signal == ["bot-for-alice"]


def test_member_roles_come_from_the_members_last_issued_grant(
    pipeline: Pipeline, subjects: Subjects
) -> None:
    alice, bot = subjects("user:alice", "agent:mail-bot")
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", alice, issued("a1", alice, roles=["user", "manager"]))
    c.settle()
    c.send("authz.grants", bot, issued("g1", bot, [alice]))
    c.settle()
    assert c.state(bot)["members"][alice]["roles"] == ["user", "manager"]
    c.send("authz.grants", alice, issued("a2", alice, roles=["user"]))
    c.settle()
    assert c.state(bot)["members"][alice]["roles"] == ["user"]


def test_grant_events_and_checks_cannot_supply_the_delegation_attribute(
    pipeline: Pipeline,
) -> None:
    c = Cluster(pipeline, PARTITIONS)
    grant = issued("g", "agent:bot")
    grant["principal"]["attr"] = {"delegation": {"depth": 0, "chain": []}, "team": "x"}
    grant["on_behalf_of"] = ["user:a", "user:b", "user:c", "user:d"]
    c.send("authz.grants", "agent:bot", grant)
    c.settle()
    # depth 4 from the chain, whatever the producer claimed: the deep-chain rule denies
    assert list(c.revoked()) == ["g"]
    assert c.revoked()["g"]["rule"] == "deny-deep-chain"
    # and the stored grant never holds what the producer sent under the reserved name
    assert validate_grant_event(grant).grant["principal"]["attr"] == {"team": "x"}  # type: ignore[index]


def test_bad_subscription_records_are_dead_lettered(pipeline: Pipeline) -> None:
    c = Cluster(pipeline, PARTITIONS)
    c.send(SUBSCRIPTIONS, "user:alice", b"not json")
    c.send(SUBSCRIPTIONS, "user:alice", {"op": "subscribe", "member": "user:alice"})
    c.send(
        SUBSCRIPTIONS,
        "user:mallory",
        {"op": "subscribe", "member": "user:alice", "home": "agent:x", "grant_id": "g"},
    )
    c.settle()
    errors = sorted(d["error"] for d in c.outputs("signals.deadletter"))
    assert errors == ["key-mismatch", "validation", "validation"]


def test_without_a_subscriptions_topic_members_show_the_state_of_a_subject_without_signals() -> (
    None
):
    pipeline = delegation_pipeline(TOPICS.__class__(**{**_fields(TOPICS), "subscriptions": None}))
    c = Cluster(pipeline, PARTITIONS)
    c.send("authz.grants", "agent:bot", issued("g", "agent:bot", ["user:alice"]))
    c.settle()
    assert c.revoked() == {}
    assert not [o for o in c.produced if o[0] == SUBSCRIPTIONS]


def _fields(topics: object) -> dict[str, object]:
    return {name: getattr(topics, name) for name in topics.__slots__}  # type: ignore[attr-defined]
