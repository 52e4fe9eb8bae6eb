"""SPIFFE IDs of ``workload`` subjects: valid ones pass, each rule of the SPIFFE ID spec refuses
its counter-example (grants and signals alike), other subject types are not checked."""

from __future__ import annotations

from typing import Any

import pytest

from streams.models.grant import validate_grant_event
from streams.models.signal import SignalInvalid, validate_signal
from streams.models.spiffe import spiffe_id_problem

VALID = [
    "spiffe://example.org/ns/prod/sa/api",
    "spiffe://trust_domain-1.example/A.b-c_d",
    "spiffe://td/x",
]
INVALID = {
    "http://example.org/app": "must start with 'spiffe://'",
    "SPIFFE://example.org/app": "must start with 'spiffe://'",
    "spiffe:///app": "empty trust domain",
    "spiffe://Example.org/app": "lowercase",
    "spiffe://example.org:8443/app": "no port",
    "spiffe://user@example.org/app": "userinfo",
    "spiffe://example.org": "needs a path",
    "spiffe://example.org/": "needs a path",
    "spiffe://example.org/a//b": "empty segment",
    "spiffe://example.org/a/": "empty segment",
    "spiffe://example.org/a/./b": "'.' segment",
    "spiffe://example.org/a/../b": "'..' segment",
    "spiffe://example.org/a?x=1": "query",
    "spiffe://example.org/a#frag": "fragment",
    "spiffe://example.org/a%20b": "percent-encoding",
    "spiffe://" + "a" * 256 + "/x": "longer than 255",
}


@pytest.mark.parametrize("value", VALID)
def test_valid_spiffe_ids(value: str) -> None:
    assert spiffe_id_problem(value) is None


@pytest.mark.parametrize(("value", "why"), INVALID.items())
def test_invalid_spiffe_ids_say_why(value: str, why: str) -> None:
    problem = spiffe_id_problem(value)
    assert problem is not None and why in problem


def grant(principal_type: str, principal_id: str) -> dict[str, Any]:
    return {
        "op": "issued",
        "grant_id": "g1",
        "principal": {"id": principal_id, "type": principal_type, "roles": ["r"]},
        "resource": {"kind": "document", "id": "d1"},
        "actions": ["read"],
        "issued_at": 1795946400000,
    }


def signal(subject_type: str, subject_id: str) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "type": "risk-level-change",
        "subject": {"type": subject_type, "id": subject_id},
        "source": "ueba",
        "event_time": 1795946400000,
        "attributes": {"current_level": "LOW"},
    }


def test_a_workload_grant_and_signal_need_a_spiffe_id() -> None:
    good = "spiffe://example.org/ns/prod/sa/api"
    assert validate_grant_event(grant("workload", good)).subject_key == f"workload:{good}"
    assert validate_signal(signal("workload", good)).subject_key == f"workload:{good}"
    with pytest.raises(SignalInvalid, match="lowercase"):
        validate_grant_event(grant("workload", "spiffe://EXAMPLE.org/api"))
    with pytest.raises(SignalInvalid, match="'..' segment"):
        validate_signal(signal("workload", "spiffe://example.org/../api"))


def test_other_subject_types_are_not_checked() -> None:
    assert validate_grant_event(grant("user", "http://x/../y")).subject_key == "user:http://x/../y"
    assert validate_signal(signal("agent", "not a uri")).subject_key == "agent:not a uri"
