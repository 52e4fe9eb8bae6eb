"""Subject mapping and event mapping: every mapped CAEP/RISC type becomes the documented signal,
and the signal changes the state policies read (docs/shared-signals.md)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.models.signal import validate_signal
from streams.processing.evaluation import signal_attributes
from streams.ssf.config import SsfConfig, Transmitter
from streams.ssf.mapping import NoLocator, SignalOut, signals_for
from streams.ssf.verify import SetRejected, SetVerifier
from streams.state.subject import apply_signal, new_signal_state, subject_snapshot
from tests.ssf.helpers import (
    AUDIENCE,
    ISSUER,
    complex_,
    iss_sub,
    jwt_id,
    opaque,
    set_claims,
)
from tests.web.helpers import RISK


def _config(**transmitter: Any) -> SsfConfig:
    entry = {"name": "idp", "issuer": ISSUER, "jwks_uri": "/dev/null", **transmitter}
    return SsfConfig.model_validate({"audience": AUDIENCE, "transmitters": [entry]})


class FixedLocator:
    """Grants held: alice has grant g1 in session s1 on device d1."""

    def subjects(
        self, grant_id: str | None, session_id: str | None, device_id: str | None
    ) -> set[str]:
        if (grant_id, session_id, device_id) == (None, None, None):
            return set()
        ok = grant_id in (None, "g1") and session_id in (None, "s1") and device_id in (None, "d1")
        return {"user:alice"} if ok else set()


def _map(
    claims: dict[str, Any], config: SsfConfig | None = None, locator: Any = None
) -> list[SignalOut]:
    config = config or _config()
    verifier = SetVerifier(config, keys={})
    verified = verifier._check_claims(config.transmitters[0], claims)
    return signals_for(verified, locator or FixedLocator())


def _one(
    event: str, payload: dict[str, Any] | None = None, sub: dict[str, Any] | None = None
) -> SignalOut:
    (out,) = _map(set_claims(event, payload, sub))
    return out


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str, str, dict[str, Any]]] = [
    # event, payload, sub_id -> role, signal type, attributes (without the ssf bookkeeping)
    (
        "session-revoked",
        {},
        complex_(user=iss_sub("alice"), session=opaque("s1")),
        "identity",
        "session-revoked",
        {"session_id": "s1"},
    ),
    ("session-revoked", {}, opaque("s1"), "identity", "session-revoked", {"session_id": "s1"}),
    ("session-revoked", {}, jwt_id("g1"), "identity", "session-revoked", {"grant_id": "g1"}),
    (
        "session-revoked",
        {},
        complex_(user=iss_sub("alice"), device=iss_sub("d1")),
        "identity",
        "session-revoked",
        {"device_id": "d1"},
    ),
    ("session-revoked", {}, iss_sub("alice"), "identity", "session-revoked", {}),
    ("sessions-revoked", {}, iss_sub("alice"), "identity", "session-revoked", {}),
    (
        "token-claims-change",
        {"claims": {"role": "ro-admin"}},
        jwt_id("g1"),
        "identity",
        "token-claims-change",
        {"claims": {"role": "ro-admin"}, "grant_id": "g1"},
    ),
    (
        "credential-change",
        {"credential_type": "password", "change_type": "update"},
        iss_sub("alice"),
        "identity",
        "credential-change",
        {"credential_type": "password", "change_type": "update"},
    ),
    (
        "assurance-level-change",
        {
            "namespace": "NIST-AAL",
            "current_level": "nist-aal1",
            "previous_level": "nist-aal2",
            "change_direction": "decrease",
        },
        iss_sub("alice"),
        "identity",
        "assurance-level-change",
        {
            "namespace": "NIST-AAL",
            "current_level": "nist-aal1",
            "previous_level": "nist-aal2",
            "change_direction": "decrease",
        },
    ),
    (
        "device-compliance-change",
        {"current_status": "not-compliant", "previous_status": "compliant"},
        complex_(user=iss_sub("alice"), device=opaque("d1")),
        "device",
        "device-compliance-change",
        {"current_status": "not-compliant", "previous_status": "compliant", "device_id": "d1"},
    ),
    (
        "session-established",
        {"acr": "AAL2", "amr": ["otp"]},
        complex_(user=iss_sub("alice"), session=opaque("s2")),
        "identity",
        "session-established",
        {"acr": "AAL2", "amr": ["otp"], "session_id": "s2"},
    ),
    (
        "session-presented",
        {"ext_id": "12345"},
        {"format": "email", "email": "alice"},
        "identity",
        "session-presented",
        {"ext_id": "12345"},
    ),
    (
        "risk-level-change",
        {
            "principal": "USER",
            "current_level": "HIGH",
            "risk_reason": "PASSWORD_FOUND_IN_DATA_BREACH",
        },
        iss_sub("alice"),
        "risk",
        "risk-level-change",
        {
            "principal": "USER",
            "current_level": "HIGH",
            "risk_reason": "PASSWORD_FOUND_IN_DATA_BREACH",
        },
    ),
    (
        "account-disabled",
        {"reason": "hijacking"},
        iss_sub("alice"),
        "identity",
        "account-disabled",
        {"reason": "hijacking"},
    ),
    ("account-enabled", {}, iss_sub("alice"), "identity", "account-enabled", {}),
    ("account-purged", {}, iss_sub("alice"), "identity", "account-purged", {}),
    (
        "credential-compromise",
        {"credential_type": "password"},
        iss_sub("alice"),
        "identity",
        "credential-compromise",
        {"credential_type": "password"},
    ),
    (
        "account-credential-change-required",
        {},
        iss_sub("alice"),
        "identity",
        "account-credential-change-required",
        {},
    ),
    (
        "identifier-changed",
        {"new-value": "alice2@example.com"},
        iss_sub("alice"),
        "identity",
        "identifier-changed",
        {"new_value": "alice2@example.com"},
    ),
    ("identifier-recycled", {}, iss_sub("alice"), "identity", "identifier-recycled", {}),
]


@pytest.mark.parametrize(
    ("event", "payload", "sub", "role", "kind", "attrs"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_event_mapping(
    event: str,
    payload: dict[str, Any],
    sub: dict[str, Any],
    role: str,
    kind: str,
    attrs: dict[str, Any],
) -> None:
    out = _one(event, payload, sub)
    assert (out.role, out.key, out.value["type"]) == (role, "user:alice", kind)
    got = {
        k: v
        for k, v in out.value["attributes"].items()
        if k not in ("ssf_jti", "event_time_source")
    }
    assert got == attrs
    assert out.value["source"] == "ssf:idp"
    validate_signal(out.value)


def test_event_timestamp_is_event_time_else_iat_and_the_signal_says_so() -> None:
    out = _one("account-disabled", {"event_timestamp": 1_700_000_000.5})
    assert out.value["event_time"] == 1_700_000_000_500
    assert out.value["attributes"]["event_time_source"] == "event_timestamp"
    claims = set_claims("account-disabled", {}, iss_sub("alice"), iat=1_700_000_123)
    (out,) = _map(claims)
    assert out.value["event_time"] == 1_700_000_123_000
    assert out.value["attributes"]["event_time_source"] == "iat"


def test_event_ids_are_deterministic_per_iss_jti_and_subject() -> None:
    claims = set_claims("account-disabled", {}, iss_sub("alice"))
    (a,), (b,) = _map(claims), _map(dict(claims))
    assert a.value["event_id"] == b.value["event_id"]
    (c,) = _map(dict(claims, jti=claims["jti"] + "x"))
    assert c.value["event_id"] != a.value["event_id"]


def test_subject_mapping_overrides_and_aliases() -> None:
    config = _config(subjects={"principal_type": "agent", "opaque": "principal"})
    (out,) = _map(set_claims("session-revoked", {}, opaque("bot-1")), config)
    assert out.key == "agent:bot-1" and out.value["attributes"].get("session_id") is None
    aliases = {
        "format": "aliases",
        "identifiers": [iss_sub("alice"), {"format": "email", "email": "a@x.com"}],
    }
    outs = _map(set_claims("account-disabled", {}, aliases))
    assert [o.key for o in outs] == ["user:alice", "user:a@x.com"]
    (out,) = _map(
        set_claims(
            "credential-change", {"credential_type": "pin", "change_type": "create"}, opaque("bob")
        )
    )
    assert out.key == "user:bob"  # opaque outside session events: the principal


def test_complex_subject_wildcards_tenant_and_critical_members() -> None:
    config = _config(tenant="t1", critical_subject_members=["group"])
    (out,) = _map(
        set_claims("session-revoked", {}, complex_(session=opaque("s1"), tenant=opaque("t1"))),
        config,
    )
    assert out.key == "user:alice"  # no user member: every user holding session s1
    with pytest.raises(SetRejected) as info:
        _map(
            set_claims("session-revoked", {}, complex_(user=iss_sub("alice"), tenant=opaque("t2"))),
            config,
        )
    assert info.value.err == "access_denied"
    with pytest.raises(SetRejected) as info:
        _map(
            set_claims("session-revoked", {}, complex_(user=iss_sub("alice"), group=opaque("g"))),
            config,
        )
    assert info.value.err == "access_denied" and "critical" in info.value.description
    # not critical: an unsupported member is ignored
    (out,) = _map(
        set_claims("session-revoked", {}, complex_(user=iss_sub("alice"), org_unit=opaque("o"))),
        config,
    )
    assert out.key == "user:alice"


def test_subjects_nobody_holds_map_to_nothing_and_unmappable_ones_are_refused() -> None:
    assert _map(set_claims("session-revoked", {}, opaque("unknown-session"))) == []
    assert _map(set_claims("session-revoked", {}, opaque("s1")), locator=NoLocator()) == []
    for sub in (
        {"format": "phone_number", "phone_number": "+1"},
        {"format": "saml_assertion_id"},
        {"format": "complex"},
    ):
        with pytest.raises(SetRejected) as info:
            _map(set_claims("account-disabled", {}, sub))
        assert info.value.err == "invalid_request"
    with pytest.raises(SetRejected):  # compliance of which device?
        _map(
            set_claims(
                "device-compliance-change",
                {"current_status": "compliant", "previous_status": "compliant"},
            )
        )


def _state(*outs: SignalOut) -> dict[str, Any]:
    state = new_signal_state()
    for out in outs:
        apply_signal(state, validate_signal(out.value))
    return state


def _signals(state: dict[str, Any], **grant: Any) -> dict[str, Any]:
    return signal_attributes(
        subject_snapshot(state, RISK),
        state,
        grant.get("device_id"),
        grant.get("session_id"),
        grant.get("grant_id"),
        grant.get("issued_at"),
    )


def test_state_policies_read_after_each_type() -> None:
    t = 1_700_000_000
    state = _state(
        _one(
            "credential-change",
            {"credential_type": "password", "change_type": "update", "event_timestamp": t},
        ),
        _one("assurance-level-change", {"namespace": "NIST-AAL", "current_level": "nist-aal1"}),
        _one("account-credential-change-required", {"event_timestamp": t + 1}),
        _one("identifier-recycled", {}),
        _one("token-claims-change", {"claims": {"role": "ro-admin"}}, jwt_id("g1")),
    )
    identity = _signals(state)["identity"]
    assert identity["assurance_level"] == "nist-aal1"
    assert identity["credential_change_required"] is True
    assert identity["identifier_status"] == "recycled"
    assert _signals(state, grant_id="g1")["token"] == {"claims": {"role": "ro-admin"}}
    assert _signals(state, grant_id="g2")["token"] == {"claims": {}}
    purged = _state(_one("account-purged"))
    assert _signals(purged)["identity"]["account_status"] == "purged"


def test_session_revocations_by_session_token_device_and_subject() -> None:
    t = 1_700_000_000
    by_session = _state(_one("session-revoked", {}, opaque("s1")))
    assert _signals(by_session, session_id="s1")["session"]["revoked"] is True
    assert _signals(by_session, session_id="s9")["session"]["revoked"] is False
    by_token = _state(_one("session-revoked", {}, jwt_id("g1")))
    assert _signals(by_token, grant_id="g1")["session"]["revoked"] is True
    assert _signals(by_token, grant_id="g2")["session"]["revoked"] is False
    everything = _state(_one("sessions-revoked", {"event_timestamp": t}))
    assert _signals(everything, issued_at=t * 1000 - 1)["session"]["revoked"] is True
    assert _signals(everything, issued_at=t * 1000 + 1)["session"]["revoked"] is False
    assert _signals(everything)["session"]["revoked"] is False  # a check starts a new session
    device = _state(
        _one(
            "session-revoked",
            {"event_timestamp": t},
            complex_(user=iss_sub("alice"), device=opaque("d1")),
        )
    )
    assert _signals(device, device_id="d1", issued_at=t * 1000 - 1)["session"]["revoked"] is True
    assert _signals(device, device_id="d2", issued_at=t * 1000 - 1)["session"]["revoked"] is False


def test_out_of_order_event_timestamps_resolve_to_the_newest() -> None:
    t = 1_700_000_000
    newer = _one(
        "risk-level-change",
        {"principal": "USER", "current_level": "LOW", "event_timestamp": t + 10},
    )
    older = _one(
        "risk-level-change", {"principal": "USER", "current_level": "HIGH", "event_timestamp": t}
    )
    for order in ((newer, older), (older, newer)):
        assert _signals(_state(*order))["risk"]["level"] == "LOW"
    disabled_late = _one("account-disabled", {"event_timestamp": t + 5})
    enabled_early = _one("account-enabled", {"event_timestamp": t})
    assert (
        _signals(_state(disabled_late, enabled_early))["identity"]["account_status"] == "disabled"
    )


def test_transmitter_is_a_plain_model() -> None:
    assert isinstance(_config().transmitters[0], Transmitter)


def test_event_times_too_far_ahead_are_refused_not_dead_lettered_later() -> None:
    now = 1_700_000_000
    claims = set_claims("account-disabled", {"event_timestamp": now + 301}, iss_sub("alice"))
    config = _config()
    verified = SetVerifier(config, keys={})._check_claims(config.transmitters[0], claims)
    with pytest.raises(SetRejected) as info:
        signals_for(verified, FixedLocator(), 300_000, now * 1000)
    assert info.value.err == "invalid_request" and "future" in info.value.description
    assert signals_for(verified, FixedLocator(), 302_000, now * 1000)


def test_token_claims_are_bounded_like_every_free_form_value() -> None:
    deep: dict[str, Any] = {"role": "x"}
    for _ in range(100):
        deep = {"nested": deep}
    with pytest.raises(SetRejected) as info:
        _map(set_claims("token-claims-change", {"claims": deep}, jwt_id("g1")))
    assert info.value.err == "invalid_request"
