"""The error hierarchy shared by every layer of pgwire-inspect.

This module imports nothing but the standard library, so every package
(``protocol`` included) may import it. Library code raises these; only
``cli.py`` turns them into messages and exit codes.
"""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "OrmRunError",
    "PgWireError",
    "ProtocolViolation",
    "ValueDecodeError",
]


class PgWireError(Exception):
    """Base class of every error pgwire-inspect raises on purpose."""


class ProtocolViolation(PgWireError):
    """Bytes that break the PostgreSQL frontend/backend protocol.

    Args:
        message: what is wrong, in one line.
        direction: ``"F"`` (frontend to backend) or ``"B"`` (backend to frontend).
        offset: byte offset in that direction's stream where the bad message starts.
    """

    def __init__(self, message: str, *, direction: str = "?", offset: int = -1) -> None:
        super().__init__(message)
        self.direction = direction
        self.offset = offset

    def __str__(self) -> str:
        where = f" ({self.direction} stream, byte offset {self.offset})" if self.offset >= 0 else ""
        return f"{self.args[0]}{where}"


class CaptureError(PgWireError):
    """A capture source (pcap/pcapng file, hex dump, live sniffer) cannot be read."""


class ValueDecodeError(PgWireError):
    """A column value cannot be decoded with the loader for its type OID."""


class OrmRunError(PgWireError):
    """The ORM side failed: a module that does not import, a missing callable, ..."""
