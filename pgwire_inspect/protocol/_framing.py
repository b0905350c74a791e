"""Incremental, sans-I/O parsers for both directions of one connection.

Follows the PostgreSQL documentation, chapter "Frontend/Backend Protocol":
"Message Flow" (startup, SSL/GSSAPI negotiation, simple and extended query,
COPY) and "Message Formats". Like h11, nothing here reads a socket:
`StreamParser.receive_data` only buffers, `StreamParser.next_message`
returns a message or `NEED_DATA`.

The two directions share a `SessionState`, because what a byte means on one
side depends on the other: the backend's one-byte answer to an SSLRequest,
and which of PasswordMessage, SASLInitialResponse, SASLResponse or
GSSResponse a frontend 'p' message is.
"""

from __future__ import annotations

import struct
from typing import Final

from ._accel import PURE_PYTHON_ENV, SPEEDUPS, data_rows_or_none
from ._backend import (
    Authentication,
    DataRow,
    ParameterStatus,
)
from ._base import MalformedMessage, Message
from ._codes import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    MAX_MESSAGE_LENGTH,
    MAX_STARTUP_PACKET_LENGTH,
    SSL_REQUEST_CODE,
)
from ._decode import (
    BACKEND_TYPES,
    FRONTEND_TYPES,
    KEEP_MALFORMED,
    TYPES_BY_BYTE,
    decode_message,
    fast_data_row,
    field_spans,
)
from ._frontend import (
    CancelRequest,
    GSSENCRequest,
    GSSENCResponse,
    PasswordMessage,
    SSLRequest,
    SSLResponse,
    StartupMessage,
)
from ._state import NEED_DATA, NeedData, SessionState, frontend_p_class

__all__ = [
    "BACKEND_TYPES",
    "FRONTEND_TYPES",
    "NEED_DATA",
    "PURE_PYTHON_ENV",
    "SPEEDUPS",
    "ConnectionParser",
    "NeedData",
    "SessionState",
    "StreamParser",
    "decode_message",
    "field_spans",
]

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HDR = struct.Struct("!ci")
#: DataRows the C speed-up splits in one call, at most.
_MAX_ROWS_AHEAD = 4096
_c_data_rows = data_rows_or_none()

#: Messages whose length field has one right value (type byte excluded).
_FIXED_LENGTH: Final[dict[str, dict[int, int]]] = {
    "F": {ord("S"): 4, ord("H"): 4, ord("X"): 4, ord("c"): 4},
    "B": {ord("Z"): 5, ord("I"): 4, ord("1"): 4, ord("2"): 4, ord("3"): 4, ord("n"): 4,
          ord("s"): 4, ord("c"): 4},
}
#: The longest a message other than the data-carrying ones is believed to be
#: when looking for a message boundary after garbage or a gap.
_RESYNC_MAX_LENGTH = 16 * 1024 * 1024
#: How many garbage bytes are scanned before they are reported, to bound memory.
_MAX_SKIP_CHUNK = 64 * 1024


class _Again:
    """Internal: the step changed state and the caller should step again (no recursion)."""


_AGAIN: Final = _Again()
_Step = Message | NeedData | _Again


class StreamParser:
    """Parses one direction of a connection, incrementally.

    Args:
        direction: "F" (frontend to backend) or "B" (backend to frontend).
        state: the `SessionState` shared with the other direction's parser.
    """

    def __init__(self, direction: str, state: SessionState) -> None:
        if direction not in ("F", "B"):
            raise ValueError(f"direction must be 'F' or 'B', not {direction!r}")
        self.direction = direction
        self.state = state
        self._buf = bytearray()
        self._pos = 0
        #: Stream offset of ``self._buf[self._pos]``.
        self.offset = 0
        self._types = TYPES_BY_BYTE[direction]
        #: DataRows come from the backend only.
        self._rows_possible = direction == "B"
        #: DataRows already split (by the C speed-up), returned from index _ready_at.
        self._ready: list[Message] = []
        self._ready_at = 0
        self._resync_reason: str | None = None
        self._resync_start = 0
        self._resync_error = 0
        self._skipped_head = b""
        self._finished = False
        self._midstream = False
        #: Pending gaps: (index in the buffer where bytes are missing, how many).
        self._gaps: list[tuple[int, int]] = []
        #: Counters: messages decoded, malformed stretches, bytes skipped.
        self.messages = 0
        self.malformed = 0
        self.bytes_skipped = 0

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Append the next bytes of the stream (in order, nothing missing)."""
        pos = self._pos
        if pos > 65536 and pos * 2 > len(self._buf):
            del self._buf[:pos]
            self._pos = 0
            self._gaps = [(at - pos, n) for at, n in self._gaps]
        self._buf += data

    def receive_gap(self, length: int) -> None:
        """Tell the parser that ``length`` bytes of the stream are missing here.

        Complete messages received before the gap are still returned; the
        message the gap cuts is given up (reported as a `MalformedMessage`),
        and parsing resumes at the next message boundary after the gap.
        """
        if length > 0:
            self._gaps.append((len(self._buf), length))

    def _limit(self) -> int:
        """Index in the buffer up to which bytes are contiguous."""
        return self._gaps[0][0] if self._gaps else len(self._buf)

    def _apply_gap(self) -> None:
        """Drop the bytes before the first pending gap and jump over it."""
        at, length = self._gaps.pop(0)
        partial = at - self._pos
        reason = f"{length} bytes missing from the capture"
        if self._resync_reason is not None:
            reason = f"{self._resync_reason}; then {reason}"
            head_room = KEEP_MALFORMED - len(self._skipped_head)
            keep = min(partial, max(0, head_room))
            self._skipped_head += bytes(self._buf[self._pos : self._pos + keep])
        else:
            self._resync_start = self.offset
            self._resync_error = self.offset + partial
            self._skipped_head = bytes(self._buf[self._pos : self._pos + min(partial,
                                                                           KEEP_MALFORMED)])
        self._pos = at
        self.offset += partial + length
        if self.direction == "F" and self.state.frontend_startup:
            self.state.frontend_startup = False
        self._resync_reason = reason

    def start_midstream(self) -> None:
        """The stream's first bytes may be the middle of a message (the capture
        began after the connection did): find the first message boundary
        before decoding, and report the bytes skipped to reach it."""
        self._midstream = True

    def finish(self) -> None:
        """Tell the parser the stream has ended: `next_message` then reports leftovers."""
        self._finished = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        ahead = sum(len(m.raw) for m in self._ready[self._ready_at:])
        return len(self._buf) - self._pos + ahead

    # ----------------------------------------------------------------- output

    def next_messages(self) -> list[Message]:
        """Return every complete message now available, in order (empty: `NEED_DATA`).

        The same messages as calling `next_message` until it returns
        `NEED_DATA`, with less overhead per message (runs of DataRows come as
        the C speed-up split them).
        """
        out: list[Message] = []
        next_message = self.next_message
        while True:
            if self._ready:
                out += self._ready[self._ready_at:]
                self._ready = []
                self._ready_at = 0
            msg = next_message()
            if msg is NEED_DATA:
                return out
            out.append(msg)  # type: ignore[arg-type]

    def next_message(self) -> Message | NeedData:
        """Return the next complete message, or `NEED_DATA`.

        Malformed stretches come back as `MalformedMessage` (with the byte
        offset of the problem); parsing goes on at the next message boundary.
        """
        ready = self._ready
        if ready:  # DataRows split ahead by the C speed-up
            i = self._ready_at
            if i + 1 < len(ready):
                self._ready_at = i + 1
            else:
                self._ready = []
                self._ready_at = 0
            return ready[i]
        # Fast path: a whole DataRow next in a backend stream with nothing unusual
        # pending (no gap, resync, TLS switch or one-byte answer): most of a big result.
        buf = self._buf
        pos = self._pos
        if (self._rows_possible and pos + 5 <= len(buf) and buf[pos] == 68  # b"D"
                and not self._gaps and self._resync_reason is None and not self._midstream
                and not self.state.pending_answers and "B" not in self.state.encrypted_from):
            if _c_data_rows is not None:
                # Every complete DataRow in the buffer at once; they cannot change
                # the parser's state, so splitting them now or one by one is the same.
                rows, end = _c_data_rows(buf, pos, len(buf), self.offset, "B", DataRow,
                                         _MAX_ROWS_AHEAD)
                if rows:
                    self._pos = end
                    self.offset += end - pos
                    self.messages += len(rows)
                    if len(rows) > 1:
                        self._ready = rows
                        self._ready_at = 1
                    return rows[0]
            else:
                (length,) = _I32.unpack_from(buf, pos + 1)
                end = pos + 1 + length
                if 4 <= length <= MAX_MESSAGE_LENGTH and end <= len(buf):
                    offset = self.offset
                    msg = fast_data_row("B", offset, bytes(buf[pos:end]))
                    if msg is not None:
                        self._pos = end
                        self.offset = offset + 1 + length
                        self.messages += 1
                        return msg
        while True:
            result = self._step()
            if not isinstance(result, _Again):
                return result

    def _step(self) -> _Step:
        st = self.state
        d = self.direction
        if d in st.encrypted_from:
            if self._resync_reason is not None:
                if self.offset > self._resync_start:
                    # Garbage scanned before the switch is reported, not counted as encrypted.
                    return self._report_skipped(resumed=True)
                # Reported up to here already: what follows is encrypted, not garbage.
                self._resync_reason = None
            if st.encrypted_from[d] < 0:
                st.encrypted_from[d] = self.offset
            n = len(self._buf) - self._pos
            st.encrypted_bytes[d] += n
            self.offset += n
            self._buf.clear()
            self._pos = 0
            return NEED_DATA
        if self._midstream:
            decided = self._decide_midstream()
            if decided is not None:
                return decided
        if self._resync_reason is not None:
            return self._resync()
        avail = self._limit() - self._pos
        if avail == 0:
            if self._gaps:
                self._apply_gap()
                return self._resync()
            if self._pos:  # all consumed: let the buffer go (streams can end here)
                self._buf.clear()
                self._pos = 0
            return NEED_DATA
        if d == "F" and st.frontend_startup:
            return self._startup_packet(avail)
        if d == "B" and st.pending_answers:
            return self._one_byte_answer()
        if avail < 5:
            return self._short(avail)
        t, length = _HDR.unpack_from(self._buf, self._pos)
        tb = t[0]
        cls = self._types.get(tb)
        if cls is None:
            return self._start_resync(f"unknown {d} message type {t!r}")
        fixed = _FIXED_LENGTH[d].get(tb)
        if length < 4 or length > MAX_MESSAGE_LENGTH or (fixed is not None and length != fixed):
            return self._start_resync(f"{cls.name} with impossible length {length}")
        if avail < length + 1:
            return self._short(avail)
        if cls is PasswordMessage:
            cls = frontend_p_class(st)
        return self._emit(cls, length + 1)

    def __iter__(self) -> StreamParser:
        return self

    def __next__(self) -> Message:
        msg = self.next_message()
        if isinstance(msg, NeedData):
            raise StopIteration
        return msg

    # -------------------------------------------------------------- internals

    def _take(self, n: int) -> tuple[int, bytes]:
        pos = self._pos
        raw = bytes(self._buf[pos : pos + n])
        self._pos = pos + n
        offset = self.offset
        self.offset = offset + n
        return offset, raw

    def _emit(self, cls: type[Message], n: int) -> Message:
        offset, raw = self._take(n)
        msg: Message | None = None
        if cls is DataRow:
            msg = fast_data_row(self.direction, offset, raw)
            if msg is not None:
                self.messages += 1
                return msg
        msg = decode_message(cls, self.direction, offset, raw)
        if isinstance(msg, MalformedMessage):
            self.malformed += 1
        else:
            self.messages += 1
            self._after(msg)
        return msg

    def _after(self, msg: Message) -> None:
        st = self.state
        if isinstance(msg, Authentication):
            st.auth_code = msg.code
        elif isinstance(msg, ParameterStatus):
            st.parameters[msg.parameter] = msg.value
        elif isinstance(msg, StartupMessage):
            st.startup_parameters = dict(msg.parameters)

    def _short(self, avail: int) -> _Step:
        if self._gaps:
            self._apply_gap()
            return self._resync()
        if not self._finished:
            return NEED_DATA
        offset, raw = self._take(avail)
        self.malformed += 1
        return MalformedMessage(self.direction, offset, raw[:KEEP_MALFORMED],
                                f"stream ends inside a message ({avail} bytes of it captured)",
                                offset, avail)

    def _startup_packet(self, avail: int) -> _Step:
        st = self.state
        buf, pos = self._buf, self._pos
        if self.offset == 0 and buf[pos] == 0x16:
            # PostgreSQL 17 direct TLS: a TLS ClientHello instead of a startup packet.
            st.encrypted_from["F"] = self.offset
            st.encrypted_from.setdefault("B", 0)
            st.encrypted_by = "TLS"
            return _AGAIN
        if avail < 8:
            return self._short(avail)
        (length,) = _I32.unpack_from(buf, pos)
        (code,) = _I32.unpack_from(buf, pos + 4)
        if length < 8 or length > MAX_STARTUP_PACKET_LENGTH:
            st.frontend_startup = False
            return self._start_resync(f"startup packet with impossible length {length}")
        cls: type[Message]
        if code == SSL_REQUEST_CODE and length == 8:
            cls = SSLRequest
        elif code == GSSENC_REQUEST_CODE and length == 8:
            cls = GSSENCRequest
        elif code == CANCEL_REQUEST_CODE and 12 <= length <= 16 + 256:
            cls = CancelRequest
        elif code >> 16 == 3 and length >= 9:
            cls = StartupMessage
        else:
            st.frontend_startup = False
            return self._start_resync(
                f"startup packet with unknown protocol version or request code {code:#010x}")
        if avail < length:
            return self._short(avail)
        offset, raw = self._take(length)
        msg = decode_message(cls, "F", offset, raw)
        if isinstance(msg, MalformedMessage):
            self.malformed += 1
            return msg
        self.messages += 1
        if cls is SSLRequest:
            st.pending_answers.append("SSL")
        elif cls is GSSENCRequest:
            st.pending_answers.append("GSS")
        elif cls is StartupMessage:
            st.frontend_startup = False
            self._after(msg)
        return msg

    def _one_byte_answer(self) -> _Step:
        st = self.state
        kind = st.pending_answers[0]
        b = self._buf[self._pos]
        yes = ord("S") if kind == "SSL" else ord("G")
        if b not in (yes, ord("N")):
            # An old server answers an SSLRequest with an ErrorResponse: parse it as such.
            st.pending_answers.pop(0)
            return _AGAIN
        st.pending_answers.pop(0)
        offset, raw = self._take(1)
        self.messages += 1
        cls = SSLResponse if kind == "SSL" else GSSENCResponse
        msg = cls("B", offset, raw, chr(b))
        if b == yes:
            st.encrypted_by = "TLS" if kind == "SSL" else "GSSAPI"
            st.encrypted_from["B"] = self.offset
            # The frontend's next byte (its TLS ClientHello) starts the encryption.
            st.encrypted_from.setdefault("F", -1)
        return msg

    # ---------------------------------------------------------------- resync

    def _start_resync(self, reason: str) -> _Step:
        self._resync_reason = reason
        self._resync_start = self.offset
        self._resync_error = self.offset
        self._skipped_head = b""
        # Skip the byte that failed so the scan moves on.
        self._skipped_head = bytes(self._buf[self._pos : self._pos + 1])
        self._pos += 1
        self.offset += 1
        return self._resync()

    def _decide_midstream(self) -> NeedData | None:
        """On a stream that may start mid-message: startup packet, message, or resync?"""
        buf, pos = self._buf, self._pos
        avail = self._limit() - pos
        if avail < 8 and not self._finished:
            return NEED_DATA
        self._midstream = False
        st = self.state
        if self.direction == "F" and st.frontend_startup and avail >= 8:
            length, code = struct.unpack_from("!ii", buf, pos)
            known = code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE) or (
                code >> 16 == 3)
            if 8 <= length <= MAX_STARTUP_PACKET_LENGTH and known:
                return None  # a real connection start: decode the startup phase
        if self.direction == "F":
            st.frontend_startup = False
        if self._plausible(pos) and self._plausible(
                pos + 1 + _I32.unpack_from(buf, pos + 1)[0]) is not False:
            return None  # already on a message boundary
        self._resync_reason = "the capture starts in the middle of the connection"
        self._resync_start = self._resync_error = self.offset
        self._skipped_head = b""
        return None

    def _plausible(self, pos: int) -> bool | None:
        """Does a message header start at ``pos``? None: not enough bytes to tell."""
        buf = self._buf
        if pos + 5 > self._limit():
            return None
        tb = buf[pos]
        if tb not in self._types:
            return False
        (length,) = _I32.unpack_from(buf, pos + 1)
        fixed = _FIXED_LENGTH[self.direction].get(tb)
        if fixed is not None:
            if length != fixed:
                return False
            if tb == ord("Z"):  # ReadyForQuery: its status byte must be I, T or E
                if pos + 6 > self._limit():
                    return False if self._finished else None
                return buf[pos + 5] in b"ITE"
            return True
        return 4 <= length <= _RESYNC_MAX_LENGTH

    def _resync(self) -> _Step:
        buf = self._buf
        end = self._limit()
        start = pos = self._pos
        found = False
        while pos < end and pos - start < _MAX_SKIP_CHUNK:
            ok = self._plausible(pos)
            if ok is None:
                break  # not enough bytes to tell
            if ok:
                (length,) = _I32.unpack_from(buf, pos + 1)
                nxt = pos + 1 + length
                following = self._plausible(nxt)
                if following or (following is None and self._finished and nxt == end):
                    found = True
                    break
                if following is None and not self._finished:
                    break  # wait for the bytes that tell whether the next header is there
            pos += 1
        if found:
            return self._flush_skipped(pos, final=True)
        if self._gaps and (pos >= end or self._plausible(pos) is None):
            self._flush_skipped(end, final=False, report=False)
            self._apply_gap()
            return _AGAIN
        if self._finished and (pos >= end or self._plausible(pos) is None):
            return self._flush_skipped(end, final=True)
        return self._flush_skipped(pos, final=False)

    def _flush_skipped(self, upto: int, *, final: bool, report: bool = True) -> _Step:
        n = upto - self._pos
        if n > 0:
            head_room = KEEP_MALFORMED - len(self._skipped_head)
            if head_room > 0:
                self._skipped_head += bytes(self._buf[self._pos : self._pos + min(n, head_room)])
            self._pos = upto
            self.offset += n
        if not report:
            return NEED_DATA
        if not final:
            if self.offset - self._resync_start >= _MAX_SKIP_CHUNK:
                return self._report_skipped(resumed=False)
            return NEED_DATA
        return self._report_skipped(resumed=True)

    def _report_skipped(self, *, resumed: bool) -> _Step:
        start = self._resync_start
        skipped = self.offset - start
        if skipped == 0 and resumed:
            self._resync_reason = None
            return _AGAIN
        reason = self._resync_reason or "garbage"
        if resumed:
            self._resync_reason = None
            tail = f"skipped {skipped} bytes; decoding resumes at byte {self.offset}"
        else:
            self._resync_start = self.offset
            tail = f"skipped {skipped} bytes, still looking for a message boundary"
        msg = MalformedMessage(self.direction, start, self._skipped_head, f"{reason}; {tail}",
                               self._resync_error, skipped)
        self._resync_error = self.offset
        self._skipped_head = b""
        self.malformed += 1
        self.bytes_skipped += skipped
        return msg


class ConnectionParser:
    """The two `StreamParser` of one connection, sharing one `SessionState`.

    Attributes:
        state: the shared session state.
        frontend: the parser of the frontend-to-backend stream ("F").
        backend: the parser of the backend-to-frontend stream ("B").
    """

    def __init__(self) -> None:
        self.state = SessionState()
        self.frontend = StreamParser("F", self.state)
        self.backend = StreamParser("B", self.state)

    def parser(self, direction: str) -> StreamParser:
        """The parser of ``direction`` ("F" or "B")."""
        return self.frontend if direction == "F" else self.backend
