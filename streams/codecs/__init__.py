"""Avro (schemaless or Confluent wire format) and JSON codecs for Vigil's Kafka records.

Callers always see JSON-shaped dicts (docs/architecture.md); the Avro shape, JSON-text fields and
timestamp conversions stay inside this package. See docs/topics-and-schemas.md.
"""

from .avro import RegistryError, SchemaRegistryClient
from .codec import InputDecoder, OutputEncoder, decode_any
from .errors import DecodeError, EncodeError, TransientError
from .schemas import RECORD_KINDS, SCHEMAS, RecordKind
from .shapes import SIGNAL_ATTRIBUTE_RECORDS, to_millis

__all__ = [
    "RECORD_KINDS",
    "SCHEMAS",
    "SIGNAL_ATTRIBUTE_RECORDS",
    "DecodeError",
    "EncodeError",
    "InputDecoder",
    "OutputEncoder",
    "RecordKind",
    "RegistryError",
    "SchemaRegistryClient",
    "TransientError",
    "decode_any",
    "to_millis",
]
