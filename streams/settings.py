"""Vigil's settings: one pydantic-settings model, read from ``VIGIL_*`` environment variables.

Every setting is documented in ``docs/configuration.md``; keep the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_KAFKA_PORT = 9092


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


class Settings(BaseSettings):
    """Runtime configuration; construct with keyword overrides or let env vars fill it."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", extra="ignore")

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
    topic_bundles: str = "vigil.policy-bundles"
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
    reevaluation_rate: int = Field(
        default=500,
        ge=1,
        description="Subjects per second re-evaluated after a policy bundle switch, per worker.",
    )

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
    def input_topics(self) -> list[str]:
        """Every topic a worker consumes: signals plus grants."""
        return [*self.signal_topics, self.topic_grants]

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
