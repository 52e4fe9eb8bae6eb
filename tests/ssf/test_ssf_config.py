"""The --ssf-config file: ${VAR} from the environment, and refused whole when not exactly valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.ssf.config import SsfConfigError, load_ssf_config

GOOD = """
audience: "https://vigil.example.com/"
transmitters:
  - name: idp
    issuer: "https://idp.example.com/"
    jwks_uri: "https://idp.example.com/jwks"
    algorithms: [RS256, ES256]
    delivery: push
    push_authorization: "Bearer ${IDP_PUSH_TOKEN}"
    tenant: t1
  - name: risk
    issuer: "https://risk.example.com/"
    jwks_uri: /etc/vigil/risk-jwks.json
    delivery: poll
    poll_endpoint: "https://risk.example.com/ssf/poll"
    poll_authorization: "Bearer ${IDP_POLL_TOKEN}"
receivers: []
"""
ENV = {"IDP_PUSH_TOKEN": "push-secret", "IDP_POLL_TOKEN": "poll-secret"}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ssf.yaml"
    path.write_text(text)
    return path


def test_issue_example_loads_with_env(tmp_path: Path) -> None:
    config = load_ssf_config(_write(tmp_path, GOOD), ENV)
    idp, risk = config.transmitters
    assert idp.push_authorization == "Bearer push-secret"
    assert risk.poll_authorization == "Bearer poll-secret"
    assert idp.tenant == "t1" and idp.jwks_is_url and not risk.jwks_is_url
    assert config.transmitter_for("https://risk.example.com/") is risk


@pytest.mark.parametrize(
    ("text", "env", "fragment"),
    [
        (
            GOOD,
            {"IDP_PUSH_TOKEN": "x"},
            "transmitters[1].poll_authorization: environment variable IDP_POLL_TOKEN",
        ),
        (GOOD.replace("tenant: t1", "tennant: t1"), ENV, "tennant"),
        (GOOD.replace("[RS256, ES256]", "[none]"), ENV, "never accepted"),
        (GOOD.replace("[RS256, ES256]", "[HS256]"), ENV, "unsupported algorithm"),
        (
            GOOD.replace('    poll_endpoint: "https://risk.example.com/ssf/poll"\n', ""),
            ENV,
            "poll_endpoint",
        ),
        (GOOD.replace("name: risk", "name: idp"), ENV, "duplicate transmitter name"),
        (GOOD.replace("delivery: push", "delivery: carrier-pigeon"), ENV, "delivery"),
        ("- just a list\n", ENV, "mapping"),
    ],
)
def test_invalid_config_is_refused_with_path(
    tmp_path: Path, text: str, env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(SsfConfigError) as info:
        load_ssf_config(_write(tmp_path, text), env)
    assert fragment in str(info.value)
    assert str(tmp_path / "ssf.yaml") in str(info.value)
