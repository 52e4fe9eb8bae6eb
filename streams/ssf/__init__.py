"""Shared Signals (OpenID SSF 1.0, CAEP 1.0, RISC 1.0): receive SETs as signals, transmit
Vigil's revocations as SETs. docs/shared-signals.md."""
