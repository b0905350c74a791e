"""A bounds-checked cursor over one message's bytes that can record field spans."""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["BodyError", "Reader", "Span"]

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class Span:
    """Where one field of a message lies in the message's bytes.

    Attributes:
        start: byte offset of the field's first byte, from the message's first byte.
        end: byte offset just past the field's last byte (exclusive).
        name: the field's name, e.g. ``"type"``, ``"length"``, ``"columns[0].type_oid"``.
        value: the field's value as short text, e.g. ``"1043"`` or ``"'users'"``.
    """

    start: int
    end: int
    name: str
    value: str


class BodyError(Exception):
    """A message body that does not match its format.

    Args:
        reason: what is wrong, one line.
        pos: byte offset in the message where the problem is.
    """

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


class Reader:
    """Reads the fields of one message, never past its end.

    Args:
        data: the whole message (type byte included, if it has one).
        pos: where the body starts (5 for typed messages, 8 for startup packets).
        spans: a list to append a `Span` per field to, or None not to record.
    """

    __slots__ = ("data", "end", "pos", "spans")

    def __init__(self, data: bytes, pos: int, spans: list[Span] | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)
        self.spans = spans

    def _need(self, n: int, what: str) -> int:
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise BodyError(
                f"{what} needs {n} bytes at byte {pos} but the message ends at byte {self.end}",
                pos,
            )
        self.pos = pos + n
        return pos

    def _span(self, start: int, name: str, value: object) -> None:
        if self.spans is not None:
            self.spans.append(Span(start, self.pos, name, str(value)))

    def remaining(self) -> int:
        """Bytes left in the message after the cursor."""
        return self.end - self.pos

    def int8(self, name: str) -> int:
        """Read a signed Int8."""
        start = self._need(1, name)
        value = self.data[start]
        value = value - 256 if value > 127 else value
        self._span(start, name, value)
        return value

    def int16(self, name: str) -> int:
        """Read a signed big-endian Int16."""
        start = self._need(2, name)
        (value,) = _I16.unpack_from(self.data, start)
        self._span(start, name, value)
        return int(value)

    def int32(self, name: str) -> int:
        """Read a signed big-endian Int32."""
        start = self._need(4, name)
        (value,) = _I32.unpack_from(self.data, start)
        self._span(start, name, value)
        return int(value)

    def uint32(self, name: str) -> int:
        """Read an unsigned big-endian 32-bit integer (an OID)."""
        start = self._need(4, name)
        (value,) = _U32.unpack_from(self.data, start)
        self._span(start, name, value)
        return int(value)

    def byte1(self, name: str) -> str:
        """Read one byte and return it as a one-character string (Latin-1)."""
        start = self._need(1, name)
        value = chr(self.data[start])
        self._span(start, name, repr(value))
        return value

    def cstring(self, name: str) -> str:
        """Read a zero-terminated String field (decoded as UTF-8, bad bytes escaped)."""
        start = self.pos
        nul = self.data.find(b"\x00", start, self.end)
        if nul < 0:
            raise BodyError(f"{name}: string has no terminating zero byte", start)
        self.pos = nul + 1
        value = self.data[start:nul].decode("utf-8", "backslashreplace")
        self._span(start, name, repr(value))
        return value

    def raw(self, n: int, name: str) -> bytes:
        """Read exactly ``n`` bytes (a Byte\\ *n* field)."""
        start = self._need(n, name)
        value = bytes(self.data[start : start + n])
        if self.spans is not None:
            shown = value[:16].hex(" ") + (" ..." if n > 16 else "")
            self._span(start, name, f"{n} bytes: {shown}" if n else "0 bytes")
        return value

    def rest(self, name: str) -> bytes:
        """Read all the bytes left in the message."""
        return self.raw(self.end - self.pos, name)

    def done(self) -> None:
        """Check that the whole message was read.

        Raises:
            BodyError: bytes are left over after the last field.
        """
        if self.pos != self.end:
            raise BodyError(
                f"{self.end - self.pos} bytes left over after the last field", self.pos
            )
