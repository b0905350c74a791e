"""Decoding one complete message: the message classes by type byte, spans, fast paths.

PostgreSQL docs, "Frontend/Backend Protocol", "Message Formats".
"""

from __future__ import annotations

import struct
from typing import Any, Final

from ._backend import (
    AUTH_CLASSES,
    Authentication,
    BackendKeyData,
    BindComplete,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    FunctionCallResponse,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
)
from ._base import MalformedMessage, Message
from ._frontend import (
    Bind,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    GSSENCResponse,
    Parse,
    PasswordMessage,
    Query,
    SSLResponse,
    Sync,
    Terminate,
)
from ._reader import BodyError, Reader, Span

__all__ = ["BACKEND_TYPES", "FRONTEND_TYPES", "KEEP_MALFORMED", "TYPES_BY_BYTE", "decode_message",
           "fast_data_row", "field_spans"]

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
#: How much of a malformed stretch a MalformedMessage keeps.
KEEP_MALFORMED = 4096

#: Frontend message classes by type byte ('p' is resolved by the session state).
FRONTEND_TYPES: Final[dict[bytes, type[Message]]] = {
    c.type_code: c
    for c in (Query, Parse, Bind, Describe, Execute, Close, Sync, Flush, Terminate,
              CopyData, CopyDone, CopyFail, FunctionCall, PasswordMessage)
}
#: Backend message classes by type byte ('R' is resolved by its code field).
BACKEND_TYPES: Final[dict[bytes, type[Message]]] = {
    c.type_code: c
    for c in (Authentication, ParameterStatus, BackendKeyData, ReadyForQuery, RowDescription,
              DataRow, CommandComplete, EmptyQueryResponse, ErrorResponse, NoticeResponse,
              ParseComplete, BindComplete, CloseComplete, ParameterDescription, NoData,
              PortalSuspended, CopyInResponse, CopyOutResponse, CopyBothResponse, CopyData,
              CopyDone, NotificationResponse, FunctionCallResponse, NegotiateProtocolVersion)
}
#: Message classes by direction and type byte (as an int), for the parsers.
TYPES_BY_BYTE: Final[dict[str, dict[int, type[Message]]]] = {
    "F": {t[0]: c for t, c in FRONTEND_TYPES.items()},
    "B": {t[0]: c for t, c in BACKEND_TYPES.items()},
}


#: Messages that repeat byte for byte in a session (the same statement, portal,
#: tag or columns again and again) and whose fields are immutable: their
#: decoded fields are cached by their bytes, up to _CACHE_ENTRIES messages of
#: at most _CACHE_MAX_BYTES each.
_CACHED: Final[frozenset[type[Message]]] = frozenset({
    RowDescription, ReadyForQuery, CommandComplete, ParseComplete, BindComplete,
    CloseComplete, NoData, EmptyQueryResponse, PortalSuspended, ParameterDescription,
    Parse, Describe, Execute, Close, Sync, Flush,
})
_CACHE_ENTRIES = 4096
_CACHE_MAX_BYTES = 4096
_body_cache: dict[bytes, tuple[type[Message], dict[str, Any]]] = {}


def decode_message(
    cls: type[Message], direction: str, offset: int, raw: bytes, spans: list[Span] | None = None
) -> Message:
    """Decode one complete message whose framing is known to be right.

    Args:
        cls: the message class (for 'R', `Authentication`: the code picks the subclass).
        direction: "F" or "B".
        offset: stream offset of the message's first byte.
        raw: the message's bytes, type byte included.
        spans: a list to receive the field spans, or None.

    Returns:
        The message, or a `MalformedMessage` when the body does not match its format.
    """
    typed = bool(cls.type_code)
    body = 5 if typed else 4
    if spans is not None:
        if typed:
            spans.append(Span(0, 1, "type", repr(chr(raw[0]))))
        spans.append(Span(body - 4, body, "length", str(len(raw) - body + 4)))
    if cls is Authentication and len(raw) >= 9:
        (code,) = _I32.unpack_from(raw, 5)
        cls = AUTH_CLASSES.get(code, Authentication)
        if cls is Authentication:
            return MalformedMessage(direction, offset, raw[:KEEP_MALFORMED],
                                    f"Authentication request with unknown code {code}",
                                    offset + 5, len(raw))
    cacheable = spans is None and cls in _CACHED and len(raw) <= _CACHE_MAX_BYTES
    if cacheable:
        kwargs = _body_cache.get(raw)
        if kwargs is not None and kwargs[0] is cls:
            return cls(direction, offset, raw, **kwargs[1])
    r = Reader(raw, body, spans)
    try:
        fields = cls.read_body(r)
        r.done()
    except BodyError as exc:
        return MalformedMessage(direction, offset, raw[:KEEP_MALFORMED],
                                f"malformed {cls.name}: {exc.reason}", offset + exc.pos, len(raw))
    if cacheable:
        if len(_body_cache) >= _CACHE_ENTRIES:
            _body_cache.clear()
        _body_cache[raw] = (cls, fields)
    return cls(direction, offset, raw, **fields)


_new_object = object.__new__
_set_direction = Message.__dict__["direction"].__set__
_set_offset = Message.__dict__["offset"].__set__
_set_raw = Message.__dict__["raw"].__set__
_set_values = DataRow.__dict__["values"].__set__


def fast_data_row(direction: str, offset: int, raw: bytes) -> Message | None:
    """DataRow without the field-by-field Reader: the hot path of big results.

    Returns None when anything is off, so that `decode_message` reports it.
    """
    end = len(raw)
    if end < 7:
        return None
    (n,) = _I16.unpack_from(raw, 5)
    pos = 7
    values: list[bytes | None] = []
    append = values.append
    unpack = _I32.unpack_from
    for _ in range(n):
        if pos + 4 > end:
            return None
        (size,) = unpack(raw, pos)
        pos += 4
        if size == -1:
            append(None)
            continue
        if size < 0 or pos + size > end:
            return None
        append(raw[pos : pos + size])
        pos += size
    if pos != end or n < 0:
        return None
    # The frozen dataclass __init__ sets each field through object.__setattr__;
    # the slot descriptors set them in about half the time.
    row = _new_object(DataRow)
    _set_direction(row, direction)
    _set_offset(row, offset)
    _set_raw(row, raw)
    _set_values(row, tuple(values))
    return row


def field_spans(message: Message) -> list[Span]:
    """The byte span of every field of ``message``, from its first byte.

    Returns:
        Spans covering ``message.raw`` exactly once; a malformed message is one span.
    """
    if isinstance(message, MalformedMessage):
        return [Span(0, len(message.raw), "malformed", message.reason)]
    if isinstance(message, SSLResponse | GSSENCResponse):
        return [Span(0, 1, "answer", repr(message.answer))]
    spans: list[Span] = []
    decode_message(type(message), message.direction, message.offset, message.raw, spans)
    return spans


