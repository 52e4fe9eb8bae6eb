"""Topic administration: create Vigil's topics with explicit configs and wait until usable.

Why explicit configs: Tansu's DescribeConfigs returns only configs set explicitly, and clients
(faust among them) that look up e.g. ``retention.ms`` fail on a topic created without it.
Why create before anything else touches a topic: Tansu auto-creates unknown topics on
Produce and on Metadata requests (4 partitions, no configs), so a producer that gets there first
silently decides the partition count. ``ensure_topics`` repairs the configs of such topics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import for_code

from streams.kafka.protocol import OP_SET, IncrementalAlterConfigsRequest
from streams.kafka.security import PLAINTEXT, KafkaSecurity

log = logging.getLogger(__name__)

#: Error code of CreateTopics when the topic is there already.
TOPIC_ALREADY_EXISTS = 36
#: Error code when a Kafka ACL denies the operation (here: CREATE, or DESCRIBE in metadata).
TOPIC_AUTHORIZATION_FAILED = 29
#: Metadata error of a topic that does not exist.
UNKNOWN_TOPIC_OR_PARTITION = 3

#: Retention of ordinary (delete-policy) topics: 7 days, Kafka's default, but stated explicitly.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000


def topic_configs(*, compacted: bool, retention_ms: int = DEFAULT_RETENTION_MS) -> dict[str, str]:
    """The explicit configs Vigil sets on a topic it creates."""
    if compacted:
        # Changelogs keep the latest value per key forever; time-based deletion would lose state.
        return {"cleanup.policy": "compact", "retention.ms": "-1"}
    return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    *,
    compacted: Iterable[str] = (),
    replication_factor: int = 1,
    retention_ms: int = DEFAULT_RETENTION_MS,
    extra_configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Create the missing ``topics`` (plus ``compacted`` ones) and wait until metadata shows them.

    Existing topics are left as they are (partition count included); only if one lacks the
    explicit ``cleanup.policy``/``retention.ms`` (a Tansu auto-created topic) are they added.
    ``extra_configs`` maps a topic name to configs merged over the defaults.

    A principal without the Kafka ACL to CREATE a topic is fine as long as an operator created
    it (least privilege, docs/security.md); if it does not exist either, that is an error.
    """
    compacted_set = set(compacted)
    names = list(dict.fromkeys([*topics, *compacted]))
    if not names:
        return
    wanted = {
        name: {
            **topic_configs(compacted=name in compacted_set, retention_ms=retention_ms),
            **dict((extra_configs or {}).get(name, {})),
        }
        for name in names
    }
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(timeout * 1000),
        **security.client_kwargs(),
    )
    await admin.start()
    try:
        new = [NewTopic(n, partitions, replication_factor, topic_configs=wanted[n]) for n in names]
        response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
        existing: list[str] = []
        not_ours: list[str] = []  # no CREATE permission: must exist already
        for name, code, *rest in response.topic_errors:
            if code == TOPIC_ALREADY_EXISTS:
                existing.append(name)
            elif code == TOPIC_AUTHORIZATION_FAILED:
                not_ours.append(name)
            elif code != 0:
                message = rest[0] if rest else None
                raise for_code(code)(f"cannot create topic {name!r}: {message or code}")
        if existing or not_ours:
            await _repair_configs(admin, [*existing, *not_ours], wanted)
        await _wait_for_metadata(admin, names, timeout, must_exist=not_ours)
    finally:
        await admin.close()


async def _repair_configs(
    admin: AIOKafkaAdminClient, names: list[str], wanted: Mapping[str, Mapping[str, str]]
) -> None:
    """Add missing explicit configs to existing topics; never overwrite a value that is set.

    Real Kafka reports defaults too, so there nothing is missing and nothing is changed. Uses
    IncrementalAlterConfigs: Tansu has no AlterConfigs, and the incremental form cannot clobber
    configs an operator set.
    """
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    try:
        responses = await admin.describe_configs(resources)
    except Exception as exc:  # a broker without DescribeConfigs: leave topics alone
        log.warning("cannot describe topic configs (%s); not checking %s", exc, names)
        return
    current: dict[str, dict[str, str]] = {}
    for response in responses:
        for code, _msg, _rtype, name, entries in response.resources:
            if code == 0:
                current[name] = {e[0]: e[1] for e in entries if e[1] is not None}
    fixes: list[tuple[int, str, list[tuple[str, int, str]]]] = []
    for name in names:
        have = current.get(name)
        if have is None:
            continue
        missing = {k: v for k, v in wanted[name].items() if k not in have}
        if missing:
            log.info("topic %s lacks explicit configs %s; setting them", name, sorted(missing))
            entries = [(k, OP_SET, v) for k, v in sorted(missing.items())]
            fixes.append((int(ConfigResourceType.TOPIC), name, entries))
    if not fixes:
        return
    try:
        response = await admin._send_request(IncrementalAlterConfigsRequest(fixes))
    except Exception as exc:
        log.warning("cannot set missing topic configs on %s: %s", [f[1] for f in fixes], exc)
        return
    for code, message, _rtype, name in response.responses:
        if code != 0:
            log.warning("cannot set missing configs on topic %s: %s", name, message or code)


async def _wait_for_metadata(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float, must_exist: list[str]
) -> None:
    """Poll metadata until every topic has all partitions with a leader (creation is async).

    ``must_exist`` are topics this principal may not create: missing means nobody will create
    them, so that fails at once with what to do instead of after the timeout.
    """
    deadline = time.monotonic() + timeout
    pending = list(names)
    while True:
        described = await admin.describe_topics(pending)
        missing = [
            t["topic"]
            for t in described
            if t["topic"] in must_exist
            and t["error_code"] in (UNKNOWN_TOPIC_OR_PARTITION, TOPIC_AUTHORIZATION_FAILED)
        ]
        if missing:
            raise for_code(TOPIC_AUTHORIZATION_FAILED)(
                f"topics {missing} do not exist (or are not visible) and Kafka ACLs do not allow "
                "this principal to create them: create them first or grant CREATE and DESCRIBE "
                "(docs/security.md)"
            )
        ready = {
            t["topic"]
            for t in described
            if t["error_code"] == 0
            and t["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
        }
        pending = [n for n in pending if n not in ready]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not ready after {timeout}s: {pending}")
        await asyncio.sleep(0.1)
