"""Delegation state in a subject's grant state: who depends on this subject, and the local
replica of the subjects this subject's grants depend on (docs/delegation.md).

Two optional maps in the grant state (``streams.state.subject``), both JSON-able:

    "subscribers": {grant_id: [home_key, parent_grant_id | None]}   # member side
    "members":     {member_key: {"roles": [...], "signals": {...},  # home side (replica)
                                 "device": [event_time, status] | None}}
    "roles":       [...]   # this subject's roles, from its last issued grant (member side)

A grant depends on the members of its ``on_behalf_of`` chain and on its device as a subject
(``device:<device_id>``). A member's ``signals`` is the subject-wide part of
``request.principal.attr.signals`` (risk, identity, network; ``subject_snapshot``); the
grant-bound parts (device, session, token) belong to the holder's grant, so a member shows them
empty. Roles are the principal roles of the member's last issued grant: the last principal Vigil
saw for that subject. ``device`` is set for a device subject: its own compliance entry.
"""

from __future__ import annotations

from typing import Any

from streams.state.subject import GrantState

#: ``device``, ``session`` and ``token`` of a chain member: not bound to the member (the grant's
#: device and session are the holder's), and never compliant (default deny).
MEMBER_BOUND_PARTS: dict[str, Any] = {
    "device": {"id": "", "compliant": False, "status": "unknown"},
    "session": {"id": "", "revoked": False},
    "token": {"claims": {}},
}

#: identity.account_status values that end every grant made under the member
DISABLED_STATUSES = ("disabled", "purged")


def split_key(subject_key: str) -> tuple[str, str]:
    """``user:alice`` -> (``user``, ``alice``); the id keeps any further colons (SPIFFE)."""
    kind, _, ident = subject_key.partition(":")
    return kind, ident


def chain_of(grant: dict[str, Any]) -> list[str]:
    return grant.get("on_behalf_of") or []


def device_key(grant: dict[str, Any]) -> str | None:
    """The grant's device as a subject (``device:<device_id>``), or None."""
    device_id = grant.get("device_id")
    return f"device:{device_id}" if device_id else None


def dependencies(grant: dict[str, Any]) -> list[str]:
    """The subjects a grant subscribes to: its chain members, each once, in chain order, then
    its device (signals whose subject is the device itself, docs/delegation.md)."""
    deps = list(dict.fromkeys(chain_of(grant)))
    device = device_key(grant)
    if device is not None and device not in deps:
        deps.append(device)
    return deps


def device_replica(grant: dict[str, Any], members: dict[str, Any]) -> list[Any] | None:
    """``[event_time, status]`` the grant's device subject forwarded, or None."""
    device = device_key(grant)
    replica = members.get(device) if device is not None else None
    return replica.get("device") if replica is not None else None


def member_entry(
    member_key: str, replica: dict[str, Any] | None, default_signals: dict[str, Any]
) -> dict[str, Any]:
    """One ``delegation.chain`` member: ``{id, type, roles, signals}``. Before the member's state
    reached this partition it shows the state of a subject without signals (``default_signals``)
    and no roles, as a check for an unknown principal would."""
    kind, ident = split_key(member_key)
    roles = replica["roles"] if replica else []
    signals = replica["signals"] if replica else default_signals
    return {
        "id": ident,
        "type": kind,
        "roles": list(roles),
        "signals": {**signals, **MEMBER_BOUND_PARTS},
    }


def delegation_attributes(
    grant: dict[str, Any], members: dict[str, Any], default_signals: dict[str, Any]
) -> dict[str, Any]:
    """``request.principal.attr.delegation``: ``chain``, ``depth`` and, for a non-empty chain,
    ``initiator`` (the first member, same shape)."""
    chain = chain_of(grant)
    if not chain:
        return {"chain": [], "depth": 0}
    entries = [member_entry(key, members.get(key), default_signals) for key in chain]
    return {"chain": entries, "depth": len(entries), "initiator": entries[0]}


def broken_member(grant: dict[str, Any], members: dict[str, Any]) -> tuple[str, str] | None:
    """The first chain member whose account is disabled (or purged) or whose credential is
    compromised, with the reason (``member-disabled`` | ``member-compromised``); None if none.
    Such a member ends every grant made under it, whatever the policies say."""
    for key in chain_of(grant):
        replica = members.get(key)
        if replica is None:
            continue
        identity = replica["signals"].get("identity", {})
        if identity.get("account_status") in DISABLED_STATUSES:
            return key, "member-disabled"
        if identity.get("credential_compromised") is True:
            return key, "member-compromised"
    return None


def path_from(grant: dict[str, Any], holder_key: str, member_key: str) -> list[str]:
    """Subject keys from ``member_key`` down the chain to the holder (cause ``path``); for the
    grant's device, the device and the holder."""
    chain = chain_of(grant)
    if member_key not in chain:
        return [member_key, holder_key]
    return [*chain[chain.index(member_key) :], holder_key]


def dependents(state: GrantState, member_key: str) -> list[dict[str, Any]]:
    """Active grants that depend on ``member_key`` (their chain names it, or it is their
    device)."""
    return [g for g in state["grants"].values() if member_key in dependencies(g)]


def subscribers(state: GrantState) -> dict[str, list[Any]]:
    return state.setdefault("subscribers", {})


def homes(state: GrantState) -> list[str]:
    """The distinct subjects holding grants that depend on this subject, in a stable order."""
    return sorted({entry[0] for entry in state.get("subscribers", {}).values()})


def children_of(state: GrantState, grant_id: str) -> list[tuple[str, str]]:
    """(child grant id, its home) of the grants made under ``grant_id``, in a stable order."""
    return sorted(
        (child, entry[0])
        for child, entry in state.get("subscribers", {}).items()
        if entry[1] == grant_id
    )


def forget_members(state: GrantState, grant: dict[str, Any]) -> bool:
    """Drop replica entries of ``grant``'s members that no other active grant names (call after
    the grant left the active set); returns whether the state changed."""
    members = state.get("members")
    if not members:
        return False
    named = {key for g in state["grants"].values() for key in dependencies(g)}
    gone = [key for key in dependencies(grant) if key in members and key not in named]
    for key in gone:
        del members[key]
    return bool(gone)
