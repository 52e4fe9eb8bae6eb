"""InputDecoder / OutputEncoder / decode_any: the one place that picks a wire format.

Hot path per event: format sniffing on the first byte, one fastavro call (decoding) or one call
of the schema's compiled encoder (encoding, see compiled.py), one small dict conversion. Instances
hold reused buffers and caches, so create one per consumer/producer loop (they are not
thread-safe).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, cast

from .avro import (
    AvroWriter,
    RegistryError,
    frame,
    read_exact,
    registry_client,
    same_schema,
    unframe,
)
from .errors import DecodeError, EncodeError
from .json_codec import dumps, loads_object, not_an_object_reason
from .schemas import BY_FULLNAME, NAMESPACE, RECORD_KINDS, SCHEMAS, RecordKind
from .shapes import (
    FROM_AVRO,
    TO_AVRO,
    JsonDict,
    deadletter_from_json,
    deadletter_to_json,
)

Headers = Sequence[tuple[str, bytes]]
JSON_CONTENT_TYPE: Final = b"application/json"
AVRO_CONTENT_TYPE: Final = b"avro/binary"
_WS: Final = frozenset(b" \t\r\n")


def _content_type(headers: Headers | None) -> bytes | None:
    """The ``content-type`` header value (case-insensitive name), stripped, or None."""
    if not headers:
        return None
    for name, value in headers:
        if name.lower() == "content-type":
            raw = value.encode() if isinstance(value, str) else bytes(value)
            return raw.strip()
    return None


def _schema_param(content_type: bytes) -> str | None:
    """``dev.vigil.Decision`` from ``avro/binary; schema=dev.vigil.Decision``."""
    for part in content_type.split(b";")[1:]:
        key, _, val = part.strip().partition(b"=")
        if key == b"schema":
            return val.strip().strip(b'"').decode("ascii", "replace")
    return None


def _is(content_type: bytes, media_type: bytes) -> bool:
    """Case-insensitive media-type match (parameters such as ``schema=`` keep their case)."""
    return content_type[: len(media_type)].lower() == media_type


def _looks_like_json(value: bytes) -> bool:
    first = value[0]
    if first == 0x7B:  # "{"
        return True
    return first in _WS and value.lstrip()[:1] == b"{"


class InputDecoder:
    """Bytes from a Kafka message -> JSON-shaped dict of one record kind.

    JSON input is only parsed (pydantic validates later); Avro input is converted to the JSON
    shape with ``event_time``-like fields as epoch ms. Registry *outages* raise
    :class:`RegistryError` (a :class:`TransientError`), not :class:`DecodeError`, so good messages
    are retried rather than dead-lettered; only a 404 for the schema id is a decode error.
    """

    __slots__ = ("_fullname", "_is_deadletter", "_kind", "_local", "_post", "_readers", "_registry")

    def __init__(self, kind: RecordKind, registry_url: str | None = None) -> None:
        if kind not in SCHEMAS:
            raise ValueError(f"unknown record kind {kind!r}; expected one of {RECORD_KINDS}")
        self._kind = kind
        self._fullname = SCHEMAS[kind].fullname
        self._local = SCHEMAS[kind].parsed
        self._post = FROM_AVRO[kind]
        self._is_deadletter = kind == "DeadLetter"
        self._registry = registry_client(registry_url) if registry_url else None
        self._readers: dict[int, tuple[Any, Any]] = {}

    @property
    def kind(self) -> RecordKind:
        """The record kind this decoder produces."""
        return self._kind

    def decode(self, value: bytes, headers: Headers | None = None) -> JsonDict:
        """Decode one message value; raises :class:`DecodeError` with a reason on bad bytes."""
        if not value:
            raise DecodeError("empty message value (tombstone?)")
        ct = _content_type(headers) if headers else None
        if ct is not None:
            if _is(ct, JSON_CONTENT_TYPE):
                return self._json(value)
            if _is(ct, AVRO_CONTENT_TYPE):
                named = _schema_param(ct)
                if named and named != self._fullname:
                    raise DecodeError(
                        f"content-type says schema {named}, this topic carries {self._fullname}"
                    )
        elif _looks_like_json(value):
            return self._json(value)
        if value[0] == 0 and self._registry is not None:
            return self._post(self._confluent(value))
        try:
            datum = read_exact(value, self._local)
        except DecodeError as exc:
            wrong_json = not_an_object_reason(value)
            if wrong_json is not None:
                raise DecodeError(wrong_json) from None
            if value[0] == 0 and len(value) > 5 and self._registry is None:
                raise DecodeError(
                    f"{exc.reason}; the message starts like the Confluent wire format (schema id "
                    f"{int.from_bytes(value[1:5], 'big')}) but no schema registry is configured "
                    "(set VIGIL_SCHEMA_REGISTRY_URL)"
                ) from None
            raise
        return self._post(datum)

    def _json(self, value: bytes) -> JsonDict:
        rec = loads_object(value)
        return deadletter_from_json(rec) if self._is_deadletter else rec

    def _confluent(self, value: bytes) -> JsonDict:
        schema_id, payload = unframe(value)
        entry = self._readers.get(schema_id)
        if entry is None:
            assert self._registry is not None
            try:
                writer = self._registry.writer_schema(schema_id)
            except RegistryError as exc:
                if exc.status == 404:
                    raise DecodeError(f"unknown schema id {schema_id} in the registry") from None
                raise
            # identical writer: skip schema resolution entirely (the common case)
            reader = None if same_schema(writer, self._local) else self._local
            entry = self._readers[schema_id] = (writer, reader)
        return read_exact(payload, entry[0], entry[1])


class OutputEncoder:
    """JSON-shaped dict -> message bytes (+ the headers to attach when producing)."""

    __slots__ = ("_headers", "_kind", "_pre", "_prefix", "_registry", "_subject", "_writer", "fmt")

    def __init__(
        self,
        kind: RecordKind,
        fmt: Literal["avro", "json"] = "avro",
        registry_url: str | None = None,
        topic: str | None = None,
    ) -> None:
        if kind not in SCHEMAS:
            raise ValueError(f"unknown record kind {kind!r}; expected one of {RECORD_KINDS}")
        if fmt not in ("avro", "json"):
            raise ValueError(f"unknown format {fmt!r}; expected 'avro' or 'json'")
        schema = SCHEMAS[kind]
        self._kind = kind
        self.fmt = fmt
        self._pre = TO_AVRO[kind]
        self._writer = AvroWriter(schema.parsed, kind)
        self._registry = registry_client(registry_url) if registry_url and fmt == "avro" else None
        # TopicNameStrategy when we know the topic, else RecordNameStrategy
        self._subject = f"{topic}-value" if topic else schema.fullname
        self._prefix: bytes | None = None
        if fmt == "json":
            self._headers: tuple[tuple[str, bytes], ...] = (("content-type", JSON_CONTENT_TYPE),)
        else:
            self._headers = (
                ("content-type", AVRO_CONTENT_TYPE + b"; schema=" + schema.fullname.encode()),
            )

    @property
    def kind(self) -> RecordKind:
        """The record kind this encoder writes."""
        return self._kind

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """Headers to attach to every produced message (a fresh list; callers may append)."""
        return list(self._headers)

    @property
    def schema_id(self) -> int | None:
        """Registry id of our writer schema (registered on first encode), if a registry is used."""
        return self._prefix_id()

    def _prefix_id(self) -> int | None:
        if self._registry is None:
            return None
        return self._registry.register(self._subject, SCHEMAS[self._kind].text)

    def encode(self, record: JsonDict) -> bytes:
        """Encode a record in JSON shape. Raises :class:`EncodeError` if it cannot be encoded."""
        if self.fmt == "json":
            return dumps(deadletter_to_json(record) if self._kind == "DeadLetter" else record)
        datum = self._pre(record)
        prefix = self._prefix
        if prefix is None and self._registry is not None:
            schema_id = self._prefix_id()
            assert schema_id is not None
            prefix = self._prefix = frame(schema_id)
        try:
            return self._writer.write(datum, prefix or b"")
        except EncodeError:
            raise
        except Exception as exc:  # fastavro: TypeError/ValueError/struct.error/AttributeError
            raise EncodeError(f"cannot encode {self._kind}: {type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- decode_any

_MIN_MS: Final = 946_684_800_000  # 2000-01-01
_MAX_MS: Final = 7_258_118_400_000  # 2200-01-01


def _ms_ok(v: Any, nullable: bool = False) -> bool:
    if v is None:
        return nullable
    return type(v) is int and _MIN_MS <= v <= _MAX_MS


def _text_ok(v: Any) -> bool:
    return type(v) is str and 0 < len(v) < 4096 and v.isprintable()


def _sane(kind: str, d: JsonDict) -> bool:
    """Plausibility of an Avro decode tried blindly against a schema (``vigil tail``)."""
    if kind == "Signal":
        s = d["subject"]
        return (
            _text_ok(d["event_id"])
            and _text_ok(d["type"])
            and _text_ok(s["type"])
            and _text_ok(s["id"])
            and _ms_ok(d["event_time"])
        )
    if kind == "GrantEvent":
        return d["op"] in ("issued", "released") and _text_ok(d["grant_id"])
    if kind == "Decision":
        return (
            _text_ok(d["decision_id"])
            and str(d["effect"]).startswith("EFFECT_")
            and _ms_ok(d["evaluated_at"])
        )
    if kind == "Revocation":
        return _text_ok(d["revocation_id"]) and _ms_ok(d["revoked_at"])
    if kind == "DeadLetter":
        return (
            _text_ok(d["error"])
            and _text_ok(d["topic"])
            and d["partition"] >= 0
            and _ms_ok(d["received_at"])
        )
    return False


def _guess_json_kind(rec: JsonDict) -> RecordKind | None:
    if "revocation_id" in rec:
        return "Revocation"
    if "decision_id" in rec:
        return "Decision"
    if "op" in rec and "grant_id" in rec:
        return "GrantEvent"
    if "event_id" in rec and "type" in rec:
        return "Signal"
    if "reason" in rec and "value" in rec:
        return "DeadLetter"
    return None


_DECODERS: dict[tuple[str, str | None], InputDecoder] = {}


def _decoder(kind: RecordKind, registry_url: str | None) -> InputDecoder:
    dec = _DECODERS.get((kind, registry_url))
    if dec is None:
        dec = _DECODERS[(kind, registry_url)] = InputDecoder(kind, registry_url)
    return dec


def decode_any(
    value: bytes, headers: Headers | None = None, registry_url: str | None = None
) -> tuple[RecordKind | None, JsonDict]:
    """Decode a message of unknown kind (for ``vigil tail``): header, then JSON, then each schema.

    Kind is None for a JSON object of no known shape. With ``registry_url``, Confluent-framed
    messages are decoded with their registered writer schema; without it the 5-byte frame is
    skipped and the payload is tried against the local schemas.
    """
    if not value:
        raise DecodeError("empty message value (tombstone?)")
    ct = _content_type(headers)
    if ct is not None and _is(ct, AVRO_CONTENT_TYPE):
        named = _schema_param(ct) or ""
        short = BY_FULLNAME.get(named) or BY_FULLNAME.get(f"{NAMESPACE}.{named}")
        if short is not None:
            kind = cast(RecordKind, short)
            return kind, _decoder(kind, registry_url).decode(value, headers)
    if (ct is not None and _is(ct, JSON_CONTENT_TYPE)) or _looks_like_json(value):
        rec = loads_object(value)
        guessed = _guess_json_kind(rec)
        if guessed == "DeadLetter":
            rec = deadletter_from_json(rec)
        return guessed, rec
    framed = value[0] == 0 and len(value) > 5
    if framed and registry_url:
        schema_id, _ = unframe(value)
        try:
            writer = registry_client(registry_url).writer_schema(schema_id)
        except RegistryError as exc:
            raise DecodeError(f"schema id {schema_id}: {exc}") from None
        short = BY_FULLNAME.get(writer.get("name", ""))
        if short is not None:
            kind = cast(RecordKind, short)
            return kind, _decoder(kind, registry_url).decode(value)
    payloads = [value[5:], value] if framed else [value]
    for payload in payloads:
        for kind in RECORD_KINDS:
            try:
                rec = FROM_AVRO[kind](read_exact(payload, SCHEMAS[kind].parsed))
            except (DecodeError, KeyError, TypeError):
                continue
            if _sane(kind, rec):
                return kind, rec
    raise DecodeError(
        not_an_object_reason(value)
        or "neither JSON nor a Vigil Avro record (Signal, GrantEvent, Decision, ...)"
    )
