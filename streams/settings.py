"""Vigil's settings: one pydantic-settings model, read from ``VIGIL_*`` environment variables.

Every setting is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_KAFKA_PORT = 9092

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


def parse_bootstrap(value: str) -> list[tuple[str, int]]:
    """Split a broker string into ``(host, port)`` pairs.

    Accepts ``host:port``, ``kafka://host:port`` (also ``tcp://``, ``plaintext://``), bare hosts
    (port 9092), bracketed IPv6 (``[::1]:9092``) and comma- or whitespace-separated lists of any
    of these, so the same value can be pasted from faust, librdkafka or a Tansu URL.
    """
    servers: list[tuple[str, int]] = []
    for raw in value.replace(";", ",").replace(" ", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        if "://" in item:
            item = item.split("://", 1)[1]
        item = item.rstrip("/")
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        elif ":" in item:
            raise ValueError(f"IPv6 broker address must be bracketed: {raw.strip()!r}")
        else:
            host, port_text = item, ""
        if not host:
            raise ValueError(f"broker address has no host: {raw.strip()!r}")
        try:
            port = int(port_text) if port_text else DEFAULT_KAFKA_PORT
        except ValueError:
            raise ValueError(f"broker port is not a number: {raw.strip()!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"broker port out of range: {raw.strip()!r}")
        servers.append((host, port))
    if not servers:
        raise ValueError("no broker address given")
    return servers


def format_bootstrap(servers: list[tuple[str, int]]) -> str:
    """Render ``(host, port)`` pairs as the ``h:p,h:p`` string every Kafka client accepts."""
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in servers)


def _readable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def kafka_security_problems(s: Settings) -> list[str]:
    """Every reason the Kafka security settings cannot be used as given (empty: usable).

    Fail closed: a TLS or SASL setting that the chosen protocol would ignore is an error, not a
    silent downgrade, and so is a password or bearer token that would cross the network in clear.
    """
    problems: list[str] = []
    protocol, mechanism = s.kafka_security_protocol, s.kafka_sasl_mechanism
    tls = protocol in ("SSL", "SASL_SSL")
    sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
    proto = f"VIGIL_KAFKA_SECURITY_PROTOCOL={protocol}"
    ssl_set = [
        name
        for name in ("cafile", "certfile", "keyfile", "key_password", "check_hostname")
        if f"kafka_ssl_{name}" in s.model_fields_set and getattr(s, f"kafka_ssl_{name}") is not None
    ]
    if ssl_set and not tls:
        names = ", ".join(f"VIGIL_KAFKA_SSL_{n.upper()}" for n in ssl_set)
        problems.append(f"{names} set but {proto} does not use TLS (use SSL or SASL_SSL)")
    for name in ("cafile", "certfile", "keyfile"):
        path = getattr(s, f"kafka_ssl_{name}")
        if path is not None and not _readable(path):
            problems.append(f"VIGIL_KAFKA_SSL_{name.upper()}={path} is not a readable file")
    if s.kafka_ssl_keyfile is not None and s.kafka_ssl_certfile is None:
        problems.append("VIGIL_KAFKA_SSL_KEYFILE set without VIGIL_KAFKA_SSL_CERTFILE")
    if s.kafka_ssl_key_password is not None and s.kafka_ssl_certfile is None:
        problems.append("VIGIL_KAFKA_SSL_KEY_PASSWORD set without VIGIL_KAFKA_SSL_CERTFILE")
    userpass = {
        "VIGIL_KAFKA_SASL_USERNAME": s.kafka_sasl_username,
        "VIGIL_KAFKA_SASL_PASSWORD": s.kafka_sasl_password,
    }
    oauth = {
        "VIGIL_KAFKA_SASL_OAUTH_TOKEN_FILE": s.kafka_sasl_oauth_token_file,
        "VIGIL_KAFKA_SASL_OAUTH_TOKEN_COMMAND": s.kafka_sasl_oauth_token_command,
    }
    given = [k for k, v in {**userpass, **oauth}.items() if v is not None]
    if not sasl:
        if mechanism is not None:
            problems.append(f"VIGIL_KAFKA_SASL_MECHANISM={mechanism} set but {proto} has no SASL")
        if given:
            problems.append(
                f"{', '.join(given)} set but {proto} has no SASL (use SASL_SSL): "
                "credentials would be ignored"
            )
        return problems
    if mechanism is None:
        problems.append(f"{proto} needs VIGIL_KAFKA_SASL_MECHANISM")
        return problems
    if mechanism == "OAUTHBEARER":
        wrong = [k for k, v in userpass.items() if v is not None]
        if wrong:
            problems.append(f"{', '.join(wrong)} set but OAUTHBEARER takes a token, not a password")
        if sum(v is not None for v in oauth.values()) != 1:
            problems.append(
                "OAUTHBEARER needs exactly one of VIGIL_KAFKA_SASL_OAUTH_TOKEN_FILE and "
                "VIGIL_KAFKA_SASL_OAUTH_TOKEN_COMMAND"
            )
        token_file = s.kafka_sasl_oauth_token_file
        if token_file is not None and not _readable(token_file):
            problems.append(
                f"VIGIL_KAFKA_SASL_OAUTH_TOKEN_FILE={token_file} is not a readable file"
            )
    else:
        wrong = [k for k, v in oauth.items() if v is not None]
        if wrong:
            problems.append(f"{', '.join(wrong)} set but {mechanism} does not use a token")
        missing = [k for k, v in userpass.items() if not v]
        if missing:
            problems.append(f"{mechanism} needs {' and '.join(missing)}")
    if protocol == "SASL_PLAINTEXT" and mechanism in ("PLAIN", "OAUTHBEARER"):
        secret = "password" if mechanism == "PLAIN" else "bearer token"
        problems.append(
            f"{mechanism} over SASL_PLAINTEXT sends the {secret} in clear text; use SASL_SSL "
            "(or SCRAM, which never sends the password)"
        )
    return problems


class Settings(BaseSettings):
    """Runtime configuration; construct with keyword overrides or let env vars fill it."""

    # hide_input_in_errors: a refused value may be a password; errors name the setting only
    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", extra="ignore", hide_input_in_errors=True
    )

    broker: str = Field(
        default=f"127.0.0.1:{DEFAULT_KAFKA_PORT}",
        description="Kafka bootstrap servers: host:port, kafka://host:port, or a comma list.",
    )
    policies: Path = Field(default=Path("policies"), description="Cerbos policy directory.")
    risk_model: Path = Field(
        default=Path("risk/model.yaml"),
        description="Risk model (YAML); built-in defaults when the file does not exist.",
    )
    data_dir: Path = Field(default=Path(".vigil/data"), description="Local state (RocksDB).")
    web_port: int = Field(default=6066, ge=0, le=65535, description="HTTP port of the worker.")
    web_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the worker's HTTP listener (/metrics, /healthz) binds to.",
    )
    partitions: int = Field(default=4, ge=1, description="Partitions for topics Vigil creates.")
    schema_registry_url: str | None = Field(
        default=None, description="Confluent schema registry; None = schemaless Avro."
    )
    output_format: Literal["avro", "json"] = Field(
        default="avro", description="Encoding of decisions, revocations and dead letters."
    )
    group_id: str = Field(default="vigil", description="Consumer group of the workers.")

    topic_identity: str = "signals.identity"
    topic_device: str = "signals.device"
    topic_network: str = "signals.network"
    topic_risk: str = "signals.risk"
    topic_grants: str = "authz.grants"
    topic_decisions: str = "authz.decisions"
    topic_revocations: str = "authz.revocations"
    topic_deadletter: str = "signals.deadletter"
    topic_changelog: str = "vigil.state-changelog"
    topic_subscriptions: str = "vigil.subscriptions"
    topic_bundles: str = "vigil.policy-bundles"
    topic_ssf_received: str = "vigil.ssf-received"
    topic_ssf_outbound: str = "vigil.ssf-outbound"
    expiry_sweep_rate: int = Field(
        default=1000,
        ge=100,
        description="Subjects per second whose grants a worker checks for expiry in the "
        "background (a subject's own events expire its grants at once).",
    )
    time_reevaluation_seconds: float = Field(
        default=60.0,
        ge=0.1,
        le=86400.0,
        description="Slot of time re-evaluation: a grant whose policies call now()/timeSince() "
        "is evaluated again (cause time) when the background sweep reaches it after the next "
        "slot boundary, with now() fixed at that boundary.",
    )
    state_retention_seconds: int = Field(
        default=30 * 24 * 3600,
        ge=0,
        description="Device and session entries of a subject's state that no active grant has "
        "named for this long (and whose event time is this old) are pruned by the background "
        "sweep; 0 keeps them forever. Keep it above the longest lifetime of a session or token "
        "a PEP may still present: a pruned session revocation is forgotten.",
    )
    reevaluation_rate: int = Field(
        default=500,
        ge=1,
        description="Subjects per second re-evaluated after a policy bundle switch, per worker.",
    )
    max_task_idle_ms: int = Field(
        default=500,
        ge=0,
        le=60_000,
        description="How long a worker waits for an input partition that is known to have "
        "unfetched records before applying the other inputs of that partition number without "
        "it (Kafka Streams' max.task.idle.ms).",
    )
    fetch_trace: Path | None = Field(
        default=None,
        description="Diagnostics: append a JSON-lines timing trace of the worker's fetch "
        "requests, record hand-overs and batches to this file (docs/performance.md).",
    )

    max_future_skew_seconds: int = Field(
        default=300,
        ge=0,
        description="How far a signal's event_time may lie ahead of the worker's clock (and of "
        "its Kafka record timestamp) before it is dead-lettered as event-time-in-future.",
    )

    bundle_public_keys: Path | None = Field(
        default=None,
        description="Ed25519 public keys (PEM, OpenSSH or base64 lines); when set, a worker "
        "accepts only bundle records signed by one of them. Unset: anyone who can write the "
        "bundle topic sets policy.",
    )
    bundle_max_revoke_share: float = Field(
        default=0.10,
        ge=0.0,
        le=1.0,
        description="Blast-radius guard: hold a bundle switch that would revoke more than this "
        "share of a worker's active grants (and more than bundle_max_revoke_count).",
    )
    bundle_max_revoke_count: int = Field(
        default=10,
        ge=0,
        description="Blast-radius guard: a switch that revokes at most this many grants is never "
        "held.",
    )

    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default="PLAINTEXT",
        description="How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL.",
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA bundle that signs the brokers' certificates."
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate (mutual TLS)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of an encrypted client key."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check that the broker certificate names the broker host."
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER."
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL PLAIN/SCRAM user.")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL PLAIN/SCRAM password."
    )
    kafka_sasl_oauth_token_file: Path | None = Field(
        default=None, description="OAUTHBEARER: file holding the token, re-read on every login."
    )
    kafka_sasl_oauth_token_command: str | None = Field(
        default=None,
        repr=False,  # its arguments may carry a client secret
        description="OAUTHBEARER: command (shell-style words, no shell) printing the token.",
    )

    # -- check API (docs/check-api.md) and engine options (as for `vigil policy eval`) --------
    api_port: int = Field(
        default=3592,
        ge=0,
        le=65535,
        description="Port of the Cerbos-compatible check API (Cerbos' HTTP port); 0 turns it off.",
    )
    api_host: str = Field(default="127.0.0.1", description="Address the check API binds to.")
    api_tokens: Path | None = Field(
        default=None,
        description="YAML file of bearer tokens and the routes each may call; unset: no auth.",
    )
    api_tls_certfile: Path | None = Field(
        default=None, description="PEM server certificate: the check API serves HTTPS."
    )
    api_tls_keyfile: Path | None = Field(
        default=None, description="PEM private key of the check API's server certificate."
    )
    api_tls_client_cafile: Path | None = Field(
        default=None,
        description="PEM CA bundle: the check API then requires a client certificate it signs.",
    )
    api_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest check API request body (413 above it).",
    )
    api_max_resources_per_request: int = Field(
        default=50,
        ge=1,
        description="Resources per CheckResources request (Cerbos requestLimits).",
    )
    api_max_actions_per_resource: int = Field(
        default=50,
        ge=1,
        description="Actions per resource of a request (Cerbos requestLimits).",
    )
    api_audit_queue: int = Field(
        default=10000,
        ge=1,
        description="Check decisions waiting to be produced; beyond it they are dropped, counted.",
    )
    api_sse_max_streams: int = Field(
        default=100, ge=1, description="Open revocation streams per worker (429 beyond)."
    )
    api_sse_buffer: int = Field(
        default=1000,
        ge=1,
        description="Revocations waiting for one stream's client; beyond, it is disconnected.",
    )
    api_sse_heartbeat_seconds: float = Field(
        default=15.0, gt=0, le=300, description="Heartbeat comment interval of an idle stream."
    )
    api_sse_history: int = Field(
        default=1000,
        ge=1,
        description="Revocations per partition held in memory for resuming streams.",
    )
    webhooks: Path | None = Field(
        default=None,
        description="YAML file of webhook targets for revocations (docs/check-api.md).",
    )
    aux_data_config: Path | None = Field(
        default=None,
        description="YAML file with Cerbos' auxData block (JWT key sets that verify "
        "auxData.jwt tokens of check and plan requests); unset: a request with a token is "
        "refused, as by a Cerbos PDP without auxData configuration.",
    )
    # -- Shared Signals (docs/shared-signals.md) ------------------------------------------
    ssf_config: Path | None = Field(
        default=None,
        description="Shared Signals YAML (transmitters we receive SETs from, our audience); "
        "unset: no /ssf/push endpoint, no polling.",
    )
    globals: dict[str, Any] | None = Field(
        default=None, description="Cerbos engine.globals (JSON object) for G/globals."
    )
    default_policy_version: str | None = Field(
        default=None, description='Policy version of requests without one ("default").'
    )
    lenient_scope_search: bool = Field(
        default=False, description="Fall back to the nearest existing ancestor scope."
    )
    strict_evaluation: bool = Field(default=False, description="Cerbos strict evaluation.")
    schema_enforcement: Literal["none", "warn", "reject"] | None = Field(
        default=None, description="Cerbos schema.enforcement of the policies' attribute schemas."
    )

    @field_validator("kafka_security_protocol", mode="before")
    @classmethod
    def _upper_protocol(cls, value: Any) -> Any:
        """Kafka users write ``sasl_ssl`` too; empty means the default, PLAINTEXT."""
        if isinstance(value, str):
            return value.strip().upper() or "PLAINTEXT"
        return value

    @field_validator("kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_mechanism(cls, value: Any) -> Any:
        """Kafka users write ``scram-sha-512`` too; empty means unset."""
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator(
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "kafka_ssl_key_password",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_sasl_oauth_token_file",
        "kafka_sasl_oauth_token_command",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``VIGIL_KAFKA_SSL_CAFILE=`` (empty) means not set, as for the registry URL."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        """Refuse, at startup, every combination that would connect less securely than asked."""
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("Kafka security: " + "; ".join(problems))
        return self

    @field_validator(
        "api_tokens",
        "api_tls_certfile",
        "api_tls_keyfile",
        "api_tls_client_cafile",
        "webhooks",
        "default_policy_version",
        mode="before",
    )
    @classmethod
    def _empty_api_is_unset(cls, value: Any) -> Any:
        """An empty ``VIGIL_API_TOKENS=`` means not set."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _check_api_tls(self) -> Settings:
        """TLS needs both halves; client certificates need TLS (fail closed, at startup)."""
        if (self.api_tls_certfile is None) != (self.api_tls_keyfile is None):
            raise ValueError("VIGIL_API_TLS_CERTFILE and VIGIL_API_TLS_KEYFILE go together")
        if self.api_tls_client_cafile is not None and self.api_tls_certfile is None:
            raise ValueError("VIGIL_API_TLS_CLIENT_CAFILE needs VIGIL_API_TLS_CERTFILE")
        return self

    @property
    def engine_options(self) -> dict[str, Any]:
        """Options of ``streams.policy.api.build_engine`` (the same as ``vigil policy eval``)."""
        return {
            "globals_": self.globals,
            "default_policy_version": self.default_policy_version,
            "lenient_scope_search": self.lenient_scope_search,
            "strict_evaluation": self.strict_evaluation,
            "schema_enforcement": self.schema_enforcement,
        }

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        """Fail at startup, not at first connect, on a malformed broker string."""
        parse_bootstrap(value)
        return value.strip()

    @field_validator("schema_registry_url")
    @classmethod
    def _empty_registry_is_none(cls, value: str | None) -> str | None:
        """``VIGIL_SCHEMA_REGISTRY_URL=`` (empty) means no registry, not an empty URL."""
        if value is None or not value.strip():
            return None
        return value.strip().rstrip("/")

    @property
    def bootstrap_servers(self) -> str:
        """The broker setting normalized to ``h:p,h:p`` for aiokafka/faust."""
        return format_bootstrap(parse_bootstrap(self.broker))

    @property
    def faust_broker(self) -> str:
        """The broker setting as faust wants it: ``kafka://h:p;h:p``."""
        return "kafka://" + ";".join(
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in parse_bootstrap(self.broker)
        )

    @property
    def signal_topics(self) -> list[str]:
        """Input topics that carry signals (identity, device, network, risk)."""
        return [self.topic_identity, self.topic_device, self.topic_network, self.topic_risk]

    @property
    def signal_topic_roles(self) -> dict[str, frozenset[str]]:
        """Signal topic -> the roles it carries (identity, device, network, risk)."""
        roles: dict[str, set[str]] = {}
        for role, topic in (
            ("identity", self.topic_identity),
            ("device", self.topic_device),
            ("network", self.topic_network),
            ("risk", self.topic_risk),
        ):
            roles.setdefault(topic, set()).add(role)
        return {topic: frozenset(r) for topic, r in roles.items()}

    @property
    def input_topics(self) -> list[str]:
        """Every topic a worker consumes: signals, grants, and the internal subscriptions topic
        of cross-subject grant dependencies (docs/delegation.md), which workers also write."""
        return [*self.signal_topics, self.topic_grants, self.topic_subscriptions]

    @property
    def output_topics(self) -> list[str]:
        """Every topic a worker produces to (besides the changelog)."""
        return [self.topic_decisions, self.topic_revocations, self.topic_deadletter]

    @property
    def compacted_topics(self) -> list[str]:
        """Topics that must be created with ``cleanup.policy=compact``."""
        return [self.topic_changelog, self.topic_bundles]

    @property
    def all_topics(self) -> list[str]:
        """Every topic Vigil uses, in a stable order, without duplicates."""
        seen: dict[str, None] = {}
        for name in [*self.input_topics, *self.output_topics, *self.compacted_topics]:
            seen.setdefault(name, None)
        return list(seen)
