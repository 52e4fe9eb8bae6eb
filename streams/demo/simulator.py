"""A seeded, pure simulator of the signals and grants a small organisation produces.

Pure on purpose: it never touches Kafka or the clock. The caller passes ``now_ms`` in and gets
``Outgoing`` records back, so the same seed and the same clock readings give the same records
(tests rely on that), and the demo decides how to send them.

The simulator keeps a rough model of what the pipeline will do (which grants a risky signal
revokes, which subjects are impaired until a recovery signal) only to keep the demo lively:
grants are issued to healthy subjects, so there is always something to revoke, and risky signals
are followed a few seconds later by the signal that undoes them.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.models.signal import SIGNAL_TOPIC_ROLE

#: Who plays along: principal ids are readable so the live view tells a story.
USER_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "uma", "victor", "wendy",
    "xavier", "yara", "zoe", "quentin", "lena", "omar", "pia", "kofi", "mei", "sven",
)  # fmt: skip
AGENT_NAMES = (
    "report-bot", "triage-agent", "sales-copilot", "code-assistant", "ops-runner",
    "mail-sorter", "hr-helper", "data-wrangler",
)  # fmt: skip
TOOLS = ("search", "crm-lookup", "email-send", "calendar", "code-exec", "ticket-update")
DEPARTMENTS = ("finance", "engineering", "sales", "legal", "support")
COUNTRIES = ("NL", "DE", "FR", "GB", "US")

#: Grants a healthy subject holds (the simulator tops them up as the pipeline revokes them).
USER_GRANT_TARGET = 3
AGENT_GRANT_TARGET = 2
#: Grants live this long unless revoked first.
GRANT_TTL_MS = 30 * 60 * 1000
#: A subject gets new grants only this long after it recovered: its recovery signal and the new
#: grant travel on different topics, and the grant must not be evaluated before the recovery.
SETTLE_MS = 2_000
#: Risky signals are undone this many ms later (uniform in the range).
RECOVERY_MS = (2_000, 5_000)

#: Risky signals for agents, with weights. An agent above LOW risk matches no tool rule at all:
#: default deny, with a null ``rule`` in the decision.
AGENT_RISKY_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("session", 3),
    ("credential", 2),
    ("risk-medium", 3),
    ("risk-high", 2),
)

Kind = Literal["signal", "grant", "malformed"]


@dataclass(frozen=True, slots=True)
class SimTopics:
    """Topic names, so the demo can follow ``Settings`` when they are renamed."""

    identity: str = "signals.identity"
    device: str = "signals.device"
    network: str = "signals.network"
    risk: str = "signals.risk"
    grants: str = "authz.grants"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce. ``value`` is what goes on the wire (JSON, or junk on purpose).

    ``track_id`` is the id the pipeline will name as a decision's ``cause.event_id``: the
    signal's ``event_id``, or ``<grant_id>@<issued_at>`` for a grant, so the view can measure
    cause-to-revocation latency.
    """

    topic: str
    key: str
    value: bytes
    kind: Kind
    track_id: str | None = None
    risky: bool = False
    record: dict[str, Any] | None = None


@dataclass(slots=True)
class SimGrant:
    """What the simulator remembers about a grant it issued."""

    grant_id: str
    actions: tuple[str, ...]
    device_id: str | None
    session_id: str | None


@dataclass(slots=True)
class Subject:
    """A user or agent and the part of its state the simulator needs to stay plausible."""

    type: str
    id: str
    roles: tuple[str, ...]
    attr: dict[str, Any]
    zone: str
    ip: str
    country: str
    devices: tuple[str, ...] = ()
    on_behalf_of: str | None = None
    session_n: int = 1
    risk_level: str = "LOW"
    impaired: bool = False
    healthy_since: int = 0
    grants: dict[str, SimGrant] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The canonical subject key every record of this subject is keyed by."""
        return f"{self.type}:{self.id}"

    @property
    def session_id(self) -> str:
        return f"s-{self.id}-{self.session_n}"

    @property
    def is_agent(self) -> bool:
        return self.type == "agent"

    @property
    def grant_target(self) -> int:
        return AGENT_GRANT_TARGET if self.is_agent else USER_GRANT_TARGET


@dataclass(order=True, slots=True)
class _Recovery:
    due_ms: int
    seq: int
    subject_key: str = field(compare=False)
    signal_type: str = field(compare=False)
    attributes: dict[str, Any] = field(compare=False)


class Simulator:
    """Generates the demo's traffic; every random choice comes from one seeded ``Random``."""

    def __init__(
        self,
        seed: int = 0,
        *,
        users: int = 20,
        agents: int = 5,
        run_id: str = "demo",
        risky_ratio: float = 0.03,
        topics: SimTopics | None = None,
    ) -> None:
        if not 1 <= users <= len(USER_NAMES):
            raise ValueError(f"users must be 1..{len(USER_NAMES)}")
        if not 0 <= agents <= len(AGENT_NAMES):
            raise ValueError(f"agents must be 0..{len(AGENT_NAMES)}")
        self.rng = random.Random(seed)
        self.run_id = run_id
        self.risky_ratio = risky_ratio
        self.topics = topics or SimTopics()
        self._event_n = 0
        self._grant_n = 0
        self._doc_n = 0
        self._recovery_seq = 0
        self._malformed_seq = 0
        self._recoveries: list[_Recovery] = []
        self.subjects: dict[str, Subject] = {}
        for name in USER_NAMES[:users]:
            n_devices = self.rng.choice((1, 1, 2))
            user = Subject(
                type="user",
                id=name,
                roles=("employee",),
                attr={"department": self.rng.choice(DEPARTMENTS)},
                zone=self.rng.choice(("corp", "corp", "vpn")),
                ip=f"10.{self.rng.randrange(1, 250)}.{self.rng.randrange(1, 250)}.{self.rng.randrange(2, 250)}",
                country=self.rng.choice(COUNTRIES),
                devices=tuple(f"D-{name}-{i + 1}" for i in range(n_devices)),
            )
            self.subjects[user.key] = user
        user_keys = list(self.subjects)
        for name in AGENT_NAMES[:agents]:
            agent = Subject(
                type="agent",
                id=name,
                roles=("agent",),
                attr={"runtime": "vigil-demo"},
                zone="corp",
                ip=f"10.200.0.{self.rng.randrange(2, 250)}",
                country="NL",
                on_behalf_of=self.rng.choice(user_keys),
            )
            self.subjects[agent.key] = agent

    # -- ids and record builders ----------------------------------------------------------

    def _next_event_id(self) -> str:
        self._event_n += 1
        return f"{self.run_id}-e{self._event_n:08d}"

    def _next_grant_id(self) -> str:
        self._grant_n += 1
        return f"{self.run_id}-g{self._grant_n:05d}"

    def _topic_for(self, signal_type: str) -> str:
        """The topic the pipeline accepts this type on (unknown types: identity)."""
        return str(getattr(self.topics, SIGNAL_TOPIC_ROLE.get(signal_type, "identity")))

    def signal(
        self,
        subject: Subject,
        signal_type: str,
        attributes: dict[str, Any],
        now_ms: int,
        *,
        risky: bool = False,
    ) -> Outgoing:
        """A signal record in the documented JSON shape, on the topic its source writes to."""
        source = {
            "device-compliance-change": "mdm",
            "network-context": "ztna",
            "risk-level-change": "ueba",
        }.get(signal_type, "idp")
        event_id = self._next_event_id()
        record = {
            "event_id": event_id,
            "type": signal_type,
            "subject": {"type": subject.type, "id": subject.id},
            "source": source,
            "event_time": now_ms,
            "attributes": attributes,
        }
        return Outgoing(
            topic=self._topic_for(signal_type),
            key=subject.key,
            value=_dumps(record),
            kind="signal",
            track_id=event_id,
            risky=risky,
            record=record,
        )

    def grant(self, subject: Subject, now_ms: int) -> Outgoing:
        """Issue a grant shaped as the policies expect and remember it in the model."""
        grant_id = self._next_grant_id()
        if subject.is_agent:
            resource = {"kind": "tool", "id": self.rng.choice(TOOLS), "attr": {}}
            actions: tuple[str, ...] = ("invoke",)
            device_id = None
        else:
            self._doc_n += 1
            owner = self.rng.choice([s.id for s in self.subjects.values() if not s.is_agent])
            resource = {
                "kind": "document",
                "id": f"doc-{self._doc_n:04d}",
                "attr": {"owner": owner, "department": subject.attr["department"]},
            }
            actions = ("read", "write") if self.rng.random() < 0.6 else ("read",)
            device_id = self.rng.choice(subject.devices)
        record: dict[str, Any] = {
            "op": "issued",
            "grant_id": grant_id,
            "principal": {
                "id": subject.id,
                "type": subject.type,
                "roles": list(subject.roles),
                "attr": dict(subject.attr),
            },
            "resource": resource,
            "actions": list(actions),
            "session_id": subject.session_id,
            "device_id": device_id,
            "issued_at": now_ms,
            "expires_at": now_ms + GRANT_TTL_MS,
            "on_behalf_of": [subject.on_behalf_of] if subject.on_behalf_of else [],
        }
        subject.grants[grant_id] = SimGrant(grant_id, actions, device_id, subject.session_id)
        return Outgoing(
            topic=self.topics.grants,
            key=subject.key,
            value=_dumps(record),
            kind="grant",
            track_id=f"{grant_id}@{now_ms}",
            record=record,
        )

    # -- phases ---------------------------------------------------------------------------

    def initial_signals(self, now_ms: int) -> list[Outgoing]:
        """Everyone healthy: compliant devices, corporate/VPN network, LOW risk."""
        out: list[Outgoing] = []
        for s in self.subjects.values():
            for device_id in s.devices:
                attrs = {"device_id": device_id, "current_status": "compliant"}
                out.append(self.signal(s, "device-compliance-change", attrs, now_ms))
            out.append(self.signal(s, "network-context", self._network_attrs(s), now_ms))
            out.append(self.signal(s, "risk-level-change", {"current_level": "LOW"}, now_ms))
            s.healthy_since = now_ms - SETTLE_MS  # the initial grants need no extra settling
        return out

    def initial_grants(self, now_ms: int) -> list[Outgoing]:
        """Every subject gets its full set of grants."""
        return [
            self.grant(s, now_ms)
            for s in self.subjects.values()
            for _ in range(s.grant_target - len(s.grants))
        ]

    def malformed(self, now_ms: int) -> list[Outgoing]:
        """Inputs the pipeline must dead-letter: bad JSON, an unknown type, a bad attribute."""
        first = next(iter(self.subjects.values()))
        bad_json = b'{"event_id": "broken", "type": "device-compliance-change", "subject": {'
        unknown = self.signal(first, "impossible-travel", {"speed_kmh": 9000}, now_ms)
        bad_level = self.signal(first, "risk-level-change", {"current_level": "EXTREME"}, now_ms)
        return [
            Outgoing(self.topics.device, first.key, bad_json, "malformed"),
            Outgoing(unknown.topic, unknown.key, unknown.value, "malformed", record=unknown.record),
            Outgoing(
                bad_level.topic,
                bad_level.key,
                bad_level.value,
                "malformed",
                record=bad_level.record,
            ),
        ]

    def one_malformed(self, now_ms: int) -> Outgoing:
        """One bad input for the steady stream, cycling through every kind the pipeline refuses
        (so dead letters, each with its reason, keep appearing while the demo runs)."""
        first = next(iter(self.subjects.values()))
        self._malformed_seq += 1
        choice = self._malformed_seq % 5
        if choice == 0:  # a device signal on the identity topic: misrouted or spoofed
            attrs = {"device_id": (first.devices or ("D0",))[0], "current_status": "compliant"}
            sig = self.signal(first, "device-compliance-change", attrs, now_ms)
            return Outgoing(
                self.topics.identity, sig.key, sig.value, "malformed", record=sig.record
            )
        if choice == 1:  # a JSON array instead of one object
            sig = self.signal(first, "network-context", self._network_attrs(first), now_ms)
            return Outgoing(sig.topic, sig.key, b"[" + sig.value + b"]", "malformed")
        bad_json, unknown, bad_level = self.malformed(now_ms)
        return (bad_json, unknown, bad_level)[choice - 2]

    def step(self, now_ms: int, signals: int) -> list[Outgoing]:
        """``signals`` signals (recoveries first, then benign or risky) plus top-up grants."""
        out = self._due_recoveries(now_ms)[:signals]
        subjects = list(self.subjects.values())
        for _ in range(signals - len(out)):
            healthy = [s for s in subjects if not s.impaired]
            if healthy and self.rng.random() < self.risky_ratio:
                candidates = [s for s in healthy if s.grants] or healthy
                out.append(self._risky(self.rng.choice(candidates), now_ms))
            else:
                out.append(self._benign(self.rng.choice(healthy or subjects), now_ms))
        out.extend(self._top_up_grants(now_ms, budget=max(1, signals // 4)))
        return out

    # -- internals ------------------------------------------------------------------------

    def _network_attrs(self, s: Subject) -> dict[str, Any]:
        return {"ip": s.ip, "country": s.country, "asn": 64500, "zone": s.zone, "anomalies": []}

    def _benign(self, s: Subject, now_ms: int) -> Outgoing:
        """Ordinary chatter that never revokes: same zone, LOW/MEDIUM risk, re-attestation."""
        if s.impaired:  # only reachable when nobody is healthy: repeat a harmless fact
            return self.signal(s, "assurance-level-change", {"current_level": "aal2"}, now_ms)
        roll = self.rng.random()
        if roll < 0.45:
            return self.signal(s, "network-context", self._network_attrs(s), now_ms)
        if roll < 0.8 or s.is_agent:
            # Agents are only trusted at LOW, so their benign risk reports stay LOW.
            level = "LOW" if s.is_agent else self.rng.choice(("LOW", "LOW", "MEDIUM"))
            attrs = {"current_level": level, "previous_level": s.risk_level}
            s.risk_level = level
            return self.signal(s, "risk-level-change", attrs, now_ms)
        if roll < 0.92:
            attrs = {
                "device_id": self.rng.choice(s.devices),
                "previous_status": "compliant",
                "current_status": "compliant",
            }
            return self.signal(s, "device-compliance-change", attrs, now_ms)
        return self.signal(s, "assurance-level-change", {"current_level": "aal2"}, now_ms)

    def _risky(self, s: Subject, now_ms: int) -> Outgoing:
        """A signal that revokes something, with the recovery that undoes it scheduled."""
        attrs: dict[str, Any]
        if s.is_agent:
            names = [name for name, _ in AGENT_RISKY_WEIGHTS]
            choice = self.rng.choices(names, [w for _, w in AGENT_RISKY_WEIGHTS])[0]
        else:
            choice = self.rng.choices(
                ("device", "risk-high", "network", "session", "account", "credential"),
                (30, 20, 20, 15, 8, 7),
            )[0]
        if choice == "device":
            device_id = self.rng.choice(s.devices)
            attrs = {
                "device_id": device_id,
                "previous_status": "compliant",
                "current_status": "not-compliant",
            }
            self._drop(s, lambda g: g.device_id == device_id and "write" in g.actions)
            fixed = {
                "device_id": device_id,
                "previous_status": "not-compliant",
                "current_status": "compliant",
            }
            self._impair(s, now_ms, "device-compliance-change", fixed)
            return self.signal(s, "device-compliance-change", attrs, now_ms, risky=True)
        if choice in ("risk-medium", "risk-high"):
            level = "MEDIUM" if choice == "risk-medium" else "HIGH"
            score = 55.0 if level == "MEDIUM" else float(self.rng.randrange(80, 100))
            attrs = {"current_level": level, "previous_level": s.risk_level, "score": score}
            s.risk_level = level
            self._drop(s, lambda g: True)
            recovery = {"current_level": "LOW", "previous_level": level}
            self._impair(s, now_ms, "risk-level-change", recovery)
            return self.signal(s, "risk-level-change", attrs, now_ms, risky=True)
        if choice == "network":
            anomalies = self.rng.choice(
                (["impossible-travel"], ["tor-exit"], ["impossible-travel", "tor-exit"])
            )
            attrs = {
                "ip": f"185.220.{self.rng.randrange(0, 255)}.{self.rng.randrange(1, 255)}",
                "country": self.rng.choice(("RU", "KP", "BR", "VN")),
                "asn": 205100,
                "zone": "untrusted",
                "anomalies": anomalies,
            }
            # untrusted + anomalies: writes are blocked, and with enough risk everything is.
            everything = len(anomalies) > 1 or s.risk_level != "LOW"
            self._drop(s, lambda g: everything or "write" in g.actions)
            self._impair(s, now_ms, "network-context", self._network_attrs(s))
            return self.signal(s, "network-context", attrs, now_ms, risky=True)
        if choice == "session":
            session_id = s.session_id
            s.session_n += 1  # the user signs in again; new grants use the new session
            self._drop(s, lambda g: g.session_id == session_id)
            s.healthy_since = now_ms  # let the revocation land before new grants arrive
            return self.signal(s, "session-revoked", {"session_id": session_id}, now_ms, risky=True)
        if choice == "account":
            self._drop(s, lambda g: True)
            self._impair(s, now_ms, "account-enabled", {"reason": "helpdesk re-enabled"})
            attrs = {"reason": "offboarding review"}
            return self.signal(s, "account-disabled", attrs, now_ms, risky=True)
        self._drop(s, lambda g: True)
        recovery = {"credential_type": "password", "change_type": "update"}
        self._impair(s, now_ms, "credential-change", recovery)
        attrs = {"reason": "credential found in breach corpus"}
        return self.signal(s, "credential-compromise", attrs, now_ms, risky=True)

    def _drop(self, s: Subject, revoked: Callable[[SimGrant], bool]) -> None:
        """Forget the grants the pipeline is expected to revoke."""
        for grant_id in [gid for gid, g in s.grants.items() if revoked(g)]:
            del s.grants[grant_id]

    def _impair(self, s: Subject, now_ms: int, signal_type: str, attrs: dict[str, Any]) -> None:
        s.impaired = True
        self._recovery_seq += 1
        due = now_ms + self.rng.randrange(*RECOVERY_MS)
        heapq.heappush(
            self._recoveries, _Recovery(due, self._recovery_seq, s.key, signal_type, attrs)
        )

    def _due_recoveries(self, now_ms: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        while self._recoveries and self._recoveries[0].due_ms <= now_ms:
            rec = heapq.heappop(self._recoveries)
            s = self.subjects[rec.subject_key]
            if rec.signal_type == "risk-level-change":
                s.risk_level = "LOW"
            out.append(self.signal(s, rec.signal_type, rec.attributes, now_ms))
            s.impaired = False
            s.healthy_since = now_ms
        return out

    def _top_up_grants(self, now_ms: int, budget: int) -> list[Outgoing]:
        """New grants for settled, healthy subjects below their target."""
        eligible = [
            s
            for s in self.subjects.values()
            if not s.impaired
            and now_ms - s.healthy_since >= SETTLE_MS
            and len(s.grants) < s.grant_target
        ]
        self.rng.shuffle(eligible)
        return [self.grant(s, now_ms) for s in eligible[:budget]]

    @property
    def pending_recoveries(self) -> int:
        """Risky signals not yet undone (the demo sends them before it stops, if asked)."""
        return len(self._recoveries)


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
