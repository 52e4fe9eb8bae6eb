"""`vigil inventory` on the project's policies (owners, gating signals, delegation bound) and on
small bundles that have gaps; the live gaps from a hand-made `LiveState` (the broker-fed one is
tests/pipeline/test_inventory_live.py)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from streams.models.live_state import GrantSeen, LiveState
from streams.policy.inventory import build_inventory

from .helpers import REPO, vigil

POLICIES = REPO / "policies"


def _entry(inv: object, kind: str, action: str) -> dict[str, object]:
    entries = {(a["kind"], a["action"]): a for a in inv["actions"]}  # type: ignore[index]
    return dict(entries[(kind, action)])


def _bundle(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_project_policies_list_every_action_with_owner_and_gating_signals() -> None:
    proc = vigil("inventory", "--policies", "policies", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    inv = json.loads(proc.stdout)
    assert {(a["kind"], a["action"]) for a in inv["actions"]} == {
        ("document", "read"),
        ("document", "write"),
        ("document", "delete"),
        ("document", "share"),
        ("tool", "invoke"),
        ("tool", "admin"),
        ("tool", "admin:**"),
        ("mailbox", "read"),
        ("mailbox", "send"),
        ("mailbox", "triage"),
    }
    owners = {a["kind"]: a["owner"] for a in inv["actions"]}
    assert owners == {
        "document": "docs-platform",
        "tool": "agent-platform",
        "mailbox": "messaging-platform",
    }
    assert {p["file"]: p["owner"] for p in inv["policies"]}["derived_roles.yaml"] == (
        "identity-security"
    )
    read = _entry(inv, "document", "read")
    assert read["signals"] == [
        "signals.identity.account_status",
        "signals.identity.credential_compromised",
        "signals.risk.level",
        "signals.session.revoked",
    ]
    assert "signals.device.compliant" in _entry(inv, "document", "write")["signals"]  # type: ignore[operator]
    # the derived role `trusted_agent` gates `invoke` through its own condition
    invoke = _entry(inv, "tool", "invoke")
    assert "derived:trusted_agent" in invoke["allowed_roles"]  # type: ignore[operator]
    triage = _entry(inv, "mailbox", "triage")
    for name in (
        "delegation.depth",
        "delegation.initiator.signals.risk.level",
        "delegation.initiator.signals.identity.credential_changed_at",
        "delegation.chain[].signals.risk.level",
        "grant.issued_at",
        "signals.risk.level",
    ):
        assert name in triage["signals"], name  # type: ignore[operator]
    assert "delegation.initiator" not in triage["signals"]  # type: ignore[operator]
    assert triage["max_delegation_depth"] == 2
    assert "delegation.initiator.roles" in _entry(inv, "mailbox", "send")["signals"]  # type: ignore[operator]
    assert "delegation.initiator.roles" not in triage["signals"]  # type: ignore[operator]
    assert _entry(inv, "document", "read")["max_delegation_depth"] is None
    assert inv["gaps"] == [] and inv["live"] is False and inv["live_counts"] is None


def test_table_and_markdown_outputs() -> None:
    table = vigil("inventory", "--policies", "policies")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "KIND",
        "ACTION",
        "OWNER",
        "ALLOWED",
        "ROLES",
        "GATING",
        "SIGNALS",
    ] + [
        "MAX",
        "DEPTH",
    ]
    assert any(line.split()[:3] == ["mailbox", "triage", "messaging-platform"] for line in lines)
    assert "No gaps found." in table.stdout and "--grants" in table.stdout
    markdown = vigil("inventory", "--policies", "policies", "-o", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert (
        "| KIND | ACTION | OWNER | ALLOWED ROLES | GATING SIGNALS | MAX DEPTH |" in markdown.stdout
    )
    assert "| mailbox | triage | messaging-platform | agent |" in markdown.stdout
    assert "`delegation.depth`" in markdown.stdout


def test_a_policy_without_owner_is_a_gap(tmp_path: Path) -> None:
    bundle = tmp_path / "policies"
    shutil.copytree(POLICIES, bundle)
    tool = bundle / "agent_tool.yaml"
    text = tool.read_text()
    tool.write_text(text.replace("metadata:\n  annotations:\n    owner: agent-platform\n", ""))
    assert tool.read_text() != text
    proc = vigil("inventory", "--policies", str(bundle), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    inv = json.loads(proc.stdout)
    assert [(g["kind"], g["subject"]) for g in inv["gaps"]] == [("no-owner", "agent_tool.yaml")]
    assert _entry(inv, "tool", "invoke")["owner"] == ""


def test_depth_bounds_unresolved_reads_and_compile_errors(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        {
            "thing.yaml": """
                apiVersion: api.cerbos.dev/v1
                metadata: {annotations: {owner: team-a}}
                resourcePolicy:
                  resource: thing
                  version: default
                  rules:
                    - actions: ["use"]
                      roles: ["agent"]
                      effect: EFFECT_ALLOW
                      condition:
                        match:
                          expr: request.principal.attr.delegation.depth < 4 && P.attr["x"] == 1
                    - actions: ["look"]
                      roles: ["agent"]
                      effect: EFFECT_ALLOW
                      condition:
                        match:
                          expr: 3 >= P.attr.delegation.depth && R.attr.public == true
            """,
        },
    )
    inv = build_inventory(bundle)
    use = next(a for a in inv.actions if a.action == "use")
    assert use.unresolved is True and use.max_delegation_depth == 3 and use.signals == []
    look = next(a for a in inv.actions if a.action == "look")
    assert look.unresolved is False and look.max_delegation_depth == 3
    assert look.signals == ["delegation.depth"] and look.attributes == ["R.attr.public"]
    (bundle / "bad.yaml").write_text("apiVersion: api.cerbos.dev/v1\nresourcePolicy: {rules: 1}\n")
    proc = vigil("inventory", "--policies", str(bundle))
    assert proc.returncode == 1 and "bad.yaml" in proc.stderr and proc.stdout == ""


def test_live_gaps_from_grants_checks_and_signals() -> None:
    live = LiveState(
        grants=[
            GrantSeen("agent:bot", "g-ok", "mailbox", ["read"], ["user:alice"]),
            GrantSeen(
                "agent:deep",
                "g-deep",
                "mailbox",
                ["read"],
                ["user:alice", "agent:a", "agent:b"],
            ),
            GrantSeen("user:alice", "g-archive", "document", ["read", "archive"], []),
        ],
        checks={("calendar", "read"): 3, ("document", "read"): 5},
        sent_signals=frozenset(
            {"signals.risk.level", "signals.risk.score", "signals.device.compliant"}
        ),
    )
    inv = build_inventory(POLICIES, live)
    assert inv.live_counts == {"grants": 3, "subjects": 0, "checks": 8}
    gaps = {(g.kind, g.subject): g.detail for g in inv.gaps}
    assert gaps[("no-policy", "document:archive")].startswith(
        "no rule of resource.document.vdefault allows 'archive'; seen in grant g-archive"
    )
    assert gaps[("no-policy", "calendar:read")] == (
        "no resource policy for kind 'calendar'; seen in 3 check(s)"
    )
    assert ("no-policy", "document:read") not in gaps
    assert gaps[("delegation-too-deep", "grant g-deep")] == (
        "depth 3 > 2 allowed for mailbox: user:alice -> agent:a -> agent:b -> agent:deep"
    )
    assert ("delegation-too-deep", "grant g-ok") not in gaps
    never = {subject for kind, subject in gaps if kind == "signal-never-sent"}
    # member signals count as the subject signals they are (initiator's credential change)
    assert {
        "signals.network.zone",
        "signals.session.revoked",
        "signals.identity.credential_changed_at",
        "signals.identity.account_status",
    } <= never
    assert not never & {"signals.risk.level", "signals.device.compliant", "signals.device.id"}
    assert all(not s.startswith("delegation.") for s in never)
