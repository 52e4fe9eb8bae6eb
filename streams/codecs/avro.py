"""Avro binary: schemaless fastavro read/write plus the Confluent wire format.

Confluent framing is ``b"\\x00" + schema_id (4 bytes, big-endian) + schemaless payload``. The
registry client is deliberately tiny (stdlib ``urllib``): it registers our writer schema once per
subject and fetches unknown writer schemas once per id; both are cached for the process.
"""

from __future__ import annotations

import json
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
from io import BytesIO
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from .errors import DecodeError
from .schemas import runtime_schema

MAGIC: Final = 0
_HEADER: Final = struct.Struct(">bI")
REGISTRY_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"


class AvroWriter:
    """Schemaless writer with one reused buffer (not thread-safe: one per task/thread)."""

    __slots__ = ("_buf", "_schema")

    def __init__(self, parsed_schema: Any) -> None:
        self._schema = parsed_schema
        self._buf = BytesIO()

    def write(self, datum: dict[str, Any], prefix: bytes = b"") -> bytes:
        """Encode ``datum`` (Avro shape), optionally after a wire-format prefix."""
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        if prefix:
            buf.write(prefix)
        schemaless_writer(buf, self._schema, datum)
        return buf.getvalue()


def read_exact(payload: bytes | memoryview, writer: Any, reader: Any = None) -> dict[str, Any]:
    """Decode one schemaless record and insist that it uses every byte.

    Trailing bytes mean the payload was written with another schema; accepting them would hand
    garbage to the pipeline, so they are a :class:`DecodeError` like any other corruption.
    """
    bio = BytesIO(payload)
    try:
        datum = schemaless_reader(bio, writer, reader)
    except EOFError:
        raise DecodeError("truncated Avro record (ran out of bytes)") from None
    except UnicodeDecodeError:
        raise DecodeError("invalid Avro record: a string field is not valid UTF-8") from None
    except DecodeError:
        raise
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise DecodeError(f"invalid Avro record: {type(exc).__name__}: {exc}") from None
    extra = len(payload) - bio.tell()
    if extra:
        raise DecodeError(
            f"invalid Avro record: {extra} trailing byte(s) after the record "
            "(written with a different schema?)"
        )
    if not isinstance(datum, dict):
        raise DecodeError("invalid Avro record: not a record")
    return datum


def frame(schema_id: int) -> bytes:
    """The 5-byte Confluent wire-format prefix for ``schema_id``."""
    return _HEADER.pack(MAGIC, schema_id)


def unframe(value: bytes) -> tuple[int, memoryview]:
    """Split a Confluent-framed message into (schema id, payload)."""
    if len(value) < 5 or value[0] != MAGIC:
        raise DecodeError("not in Confluent wire format (expected magic byte 0 + 4-byte schema id)")
    _, schema_id = _HEADER.unpack_from(value)
    return schema_id, memoryview(value)[5:]


class RegistryError(Exception):
    """The schema registry could not be reached or refused a request (``status`` if HTTP)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SchemaRegistryClient:
    """Minimal Confluent Schema Registry REST client with process-lifetime caches."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": REGISTRY_CONTENT_TYPE, "Accept": REGISTRY_CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise RegistryError(f"{method} {path}: HTTP {exc.code} {detail}", exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RegistryError(f"{method} {path}: {exc}") from None

    def register(self, subject: str, schema_text: str) -> int:
        """Register (idempotently) ``schema_text`` under ``subject``; return its global id."""
        key = (subject, schema_text)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        with self._lock:
            if key not in self._ids:
                quoted = urllib.parse.quote(subject, safe="")
                resp = self._request(
                    "POST", f"/subjects/{quoted}/versions", {"schema": schema_text}
                )
                self._ids[key] = int(resp["id"])
            return self._ids[key]

    def writer_schema(self, schema_id: int) -> Any:
        """Fetch (once) and parse the writer schema with this id."""
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        with self._lock:
            if schema_id not in self._by_id:
                resp = self._request("GET", f"/schemas/ids/{schema_id}")
                schema_type = resp.get("schemaType", "AVRO")
                if schema_type != "AVRO":
                    raise RegistryError(f"schema id {schema_id} is {schema_type}, not AVRO")
                self._by_id[schema_id] = runtime_schema(resp["schema"])
            return self._by_id[schema_id]


_CLIENTS: dict[str, SchemaRegistryClient] = {}


def registry_client(url: str) -> SchemaRegistryClient:
    """One shared client (and so one cache) per registry URL."""
    client = _CLIENTS.get(url)
    if client is None:
        client = _CLIENTS.setdefault(url, SchemaRegistryClient(url))
    return client


def same_schema(a: Any, b: Any) -> bool:
    """Whether two parsed schemas are the same for reading (Parsing Canonical Form)."""
    try:
        return bool(to_parsing_canonical_form(a) == to_parsing_canonical_form(b))
    except Exception:
        return False
