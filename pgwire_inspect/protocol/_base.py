"""One frozen dataclass per PostgreSQL protocol message.

Names and fields follow the PostgreSQL documentation, chapter
"Frontend/Backend Protocol", section "Message Formats". Every message keeps
its raw bytes (type byte included) and the byte offset of its first byte in
its direction's stream; `Message.spans` gives the byte span of each field.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ._reader import Reader, Span

__all__ = ["Column", "MalformedMessage", "Message", "jsonable"]

_FRAME = ("direction", "offset", "raw")


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Column):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """Base of every protocol message.

    Attributes:
        direction: ``"F"`` frontend to backend, ``"B"`` backend to frontend.
        offset: byte offset of the message's first byte in its direction's stream.
        raw: the message's bytes, type byte and length included.
    """

    direction: str
    offset: int
    raw: bytes

    name: ClassVar[str] = "Message"
    #: The type byte, or b"" for the untyped startup-phase packets.
    type_code: ClassVar[bytes] = b""
    #: Fields that hold secrets (passwords, password hashes, SASL proofs):
    #: views mask them unless asked to show them.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def length(self) -> int:
        """The message's length in bytes, type byte included."""
        return len(self.raw)

    @property
    def end(self) -> int:
        """Stream offset just past the message's last byte."""
        return self.offset + len(self.raw)

    def fields(self) -> dict[str, Any]:
        """The message's fields as JSON-ready values (bytes as hex), keyed by snake_case name."""
        return {
            f.name: jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in _FRAME
        }

    def spans(self) -> list[Span]:
        """Decode the message again and return the byte span of every field.

        Returns:
            Spans in order, covering the message's bytes exactly once (the
            first is ``type`` for typed messages, then ``length``).
        """
        from ._framing import field_spans

        return field_spans(self)

    def summary(self) -> str:
        """A short one-line description of the message's content."""
        parts = []
        for key, value in self.fields().items():
            text = repr(value)
            parts.append(f"{key}={text if len(text) <= 60 else text[:57] + '...'}")
        return ", ".join(parts)

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        """Read the fields after the type byte and length; returns constructor kwargs."""
        return {}

    def __repr__(self) -> str:
        summary = self.summary()
        return f"{self.name}({self.direction}@{self.offset}{', ' if summary else ''}{summary})"


@dataclass(frozen=True, slots=True, repr=False)
class MalformedMessage(Message):
    """Bytes that do not form a valid message; decoding goes on after them.

    Attributes:
        reason: what is wrong, one line.
        error_offset: byte offset of the problem in the stream.
        skipped: how many stream bytes this covers (``raw`` holds at most 4 KiB of them).
    """

    reason: str
    error_offset: int
    skipped: int
    name: ClassVar[str] = "MalformedMessage"

    @property
    def length(self) -> int:
        """Bytes of the stream this covers (``raw`` keeps at most the first 4 KiB)."""
        return self.skipped

    @property
    def end(self) -> int:
        """Stream offset just past the bytes this covers."""
        return self.offset + self.skipped

    def fields(self) -> dict[str, Any]:
        """Reason, where the problem is, how many bytes, and the first bytes as hex."""
        return {"reason": self.reason, "error_offset": self.error_offset,
                "skipped": self.skipped, "data": self.raw[:64].hex()}


@dataclass(frozen=True, slots=True)
class Column:
    """One field description of a RowDescription.

    Attributes:
        name: column name (or label).
        table_oid: OID of the table it comes from, 0 if none.
        column: attribute number in that table, 0 if none.
        type_oid: OID of the column's data type.
        typlen: data type size (pg_type.typlen); negative for variable width.
        typmod: type modifier (pg_attribute.atttypmod), -1 if none.
        format: 0 text, 1 binary.
    """

    name: str
    table_oid: int
    column: int
    type_oid: int
    typlen: int
    typmod: int
    format: int

    def as_dict(self) -> dict[str, Any]:
        """The column's fields as a dict with the names above."""
        return {"name": self.name, "table_oid": self.table_oid, "column": self.column,
                "type_oid": self.type_oid, "typlen": self.typlen, "typmod": self.typmod,
                "format": self.format}
