"""The backend side of one replayed client connection, sans-I/O.

`ReplaySession.receive_data` takes the client's bytes (parsed with the
protocol package's `StreamParser`) and returns the bytes to answer with:
the recorded backend messages of the matching recorded query (see the
package docstring for the rules), or an ErrorResponse with SQLSTATE 08P01
when the recording has none.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..protocol import (
    NEED_DATA,
    Bind,
    CancelRequest,
    Close,
    CopyDone,
    CopyFail,
    Describe,
    ErrorResponse,
    Execute,
    Flush,
    FunctionCall,
    GSSENCRequest,
    MalformedMessage,
    Message,
    Parse,
    Query,
    ReadyForQuery,
    SessionState,
    SSLRequest,
    StartupMessage,
    StreamParser,
    Sync,
    Terminate,
)
from ._recording import RecordedQuery, Recording, _Names, _norm, _short

__all__ = [
    "DIVERGENCE_MESSAGE",
    "DIVERGENCE_SQLSTATE",
    "Divergence",
    "ParameterMismatch",
    "ReplaySession",
    "error_response",
]

#: SQLSTATE of the error a query without a recorded answer gets (protocol_violation).
DIVERGENCE_SQLSTATE = "08P01"
#: Message of that error.
DIVERGENCE_MESSAGE = "pgwire-inspect replay: the capture has no answer for this query"

#: Answers without content: the bytes every server sends (Message Formats).
_FIXED = {Parse: b"1\x00\x00\x00\x04", Bind: b"2\x00\x00\x00\x04", Close: b"3\x00\x00\x00\x04"}
_EXTENDED = (Parse, Bind, Describe, Execute, Close)


def error_response(code: str, message: str, detail: str | None = None,
                   severity: str = "ERROR") -> bytes:
    """The bytes of an ErrorResponse (B).

    Args:
        code: the SQLSTATE, five characters (PostgreSQL docs, Appendix A).
        message: the primary message (field ``M``).
        detail: the detail (field ``D``), if any.
        severity: ``ERROR``, ``FATAL`` ...; sent as fields ``S`` and ``V``.

    Returns:
        ``b"E"``, the length, the fields (PostgreSQL docs, "Error and Notice
        Message Fields") and the terminating zero byte.
    """
    body = b""
    fields = [("S", severity), ("V", severity), ("C", code), ("M", message)]
    if detail is not None:
        fields.append(("D", detail))
    for key, value in fields:
        body += key.encode() + value.encode("utf-8", "replace").replace(b"\0", b" ") + b"\0"
    body += b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def _ready(status: str) -> bytes:
    return b"Z\x00\x00\x00\x05" + status.encode()



@dataclass(frozen=True)
class Divergence:
    """A request of the replayed client that the recording has no answer for.

    Attributes:
        session: 0-based number of the client connection to the replay server.
        request: the message name ("Query", "Execute", ...).
        kind: "simple", "extended" or "function".
        sql: the query's SQL text, if known.
        parameters: its Bind values, if any.
        expected: the recording's first query not yet answered on that connection.
    """

    session: int
    request: str
    kind: str
    sql: str | None
    parameters: tuple[bytes | None, ...] | None
    expected: RecordedQuery | None

    def describe(self) -> str:
        """One line: what the client sent and what the recording had next."""
        params = f" with parameters {_values(self.parameters)}" if self.parameters else ""
        nxt = self.expected.describe() if self.expected else "nothing more"
        return (f"{self.request} of {_short(self.sql)!r}{params} has no recorded answer; "
                f"the recording had next: {nxt}")


@dataclass(frozen=True)
class ParameterMismatch:
    """An extended query answered with the only recorded executions of its text,
    whose Bind values differ from the client's.

    Attributes:
        session: 0-based number of the client connection.
        sql: the query's SQL text.
        parameters: the client's Bind values.
        recorded: the recorded query whose answer was sent.
    """

    session: int
    sql: str | None
    parameters: tuple[bytes | None, ...]
    recorded: RecordedQuery

    def describe(self) -> str:
        """One line: which values were asked for and which recording answered."""
        return (f"{_short(self.sql)!r} with parameters {_values(self.parameters)} was "
                f"answered with the recording of query {self.recorded.index}, whose parameters "
                f"were {_values(self.recorded.parameters or ())}")


def _values(params: tuple[bytes | None, ...]) -> str:
    return "(" + ", ".join("NULL" if p is None else repr(p.decode("utf-8", "replace"))
                           for p in params) + ")"


@dataclass
class _Current:
    """The extended-protocol query being received (up to its Sync)."""

    sql: str | None = None
    bind: Bind | None = None
    unit: RecordedQuery | None = None
    pos: int = -1
    failed: bool = False
    ours: bool = False  # the error was ours (a divergence), not recorded
    noted: bool = False  # a ParameterMismatch was recorded


class ReplaySession:
    """The backend side of one client connection, replayed (sans-I/O).

    Args:
        recording: what to answer with.
        number: 0-based number of this client connection.
    """

    def __init__(self, recording: Recording, number: int = 0) -> None:
        self.recording = recording
        self.number = number
        #: Requests the recording had no answer for.
        self.divergences: list[Divergence] = []
        #: Extended queries answered with a recording of other Bind values.
        self.mismatches: list[ParameterMismatch] = []
        #: Indexes (into ``recording.queries``) of the recorded queries answered.
        self.used: set[int] = set()
        #: True once the connection is to be closed (Terminate, CancelRequest, garbage).
        self.closed = False
        self._parser = StreamParser("F", SessionState())
        self._names = _Names()
        self._pending: list[tuple[Message, str | None]] = []
        self._current = _Current()
        self._copy_rest: list[Message] = []
        self._status = "I"
        self._out = bytearray()
        self._last = -1  # index of the recorded query answered last

    # ---------------------------------------------------------------- input

    def receive_data(self, data: bytes) -> bytes:
        """Take the client's next bytes; return the bytes to send back (maybe none)."""
        self._parser.receive_data(data)
        while not self.closed:
            msg = self._parser.next_message()
            if msg is NEED_DATA:
                break
            assert isinstance(msg, Message)
            self._handle(msg)
        out, self._out = bytes(self._out), bytearray()
        return out

    def unused(self) -> list[RecordedQuery]:
        """The recorded queries this client has not (yet) been answered with."""
        return [q for q in self.recording.queries if q.index not in self.used]

    # ------------------------------------------------------------ internals

    def _send(self, messages: list[Message] | bytes) -> None:
        if isinstance(messages, bytes):
            if messages.startswith(b"Z") and len(messages) == 6:
                self._status = chr(messages[5])
            self._out += messages
            return
        for m in messages:
            if isinstance(m, ReadyForQuery):
                self._status = m.status
            self._out += m.raw

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, SSLRequest | GSSENCRequest):
            self._parser.state.pending_answers.clear()
            self._out += b"N"
        elif isinstance(msg, StartupMessage):
            self._send(self.recording.startup_answer(msg))
        elif isinstance(msg, Terminate | CancelRequest):
            self.closed = True
        elif isinstance(msg, MalformedMessage):
            self._send(error_response(DIVERGENCE_SQLSTATE, f"invalid message: {msg.reason}",
                                      severity="FATAL"))
            self.closed = True
        elif isinstance(msg, Query | FunctionCall):
            if self._pending:  # extended requests without Sync: answered first, in order
                self._answer_pending()
            sql = msg.sql if isinstance(msg, Query) else f"function call, OID {msg.function_oid}"
            self._simple(msg, "simple" if isinstance(msg, Query) else "function", sql)
        elif isinstance(msg, CopyDone | CopyFail):
            rest, self._copy_rest = self._copy_rest, []
            self._send(rest)
        elif isinstance(msg, _EXTENDED):
            self._pending.append((msg, self._names.sql_of(msg)))
        elif isinstance(msg, Flush | Sync):
            self._pending.append((msg, None))
            self._answer_pending()
            if isinstance(msg, Sync):
                self._current = _Current()
        # Anything else (CopyData, a PasswordMessage never asked for) needs no answer.

    def _use(self, unit: RecordedQuery) -> None:
        self.used.add(unit.index)
        self._last = unit.index

    def _find(self, kind: str, sql: str | None, bind: Bind | None = None,
              exact: bool = False) -> RecordedQuery | None:
        """The first unanswered recorded query with this kind and SQL text.

        With a Bind, the first whose Bind had the same values and result
        formats is preferred, then the first with the same values; with
        ``exact``, one of those or None.
        """
        candidates = [q for q in self.recording.by_key.get((kind, _norm(sql)), [])
                      if q.index not in self.used]
        if bind is not None:
            for q in candidates:
                if q.parameters == bind.parameters and q.result_formats == bind.result_formats:
                    return q
            for q in candidates:
                if q.parameters == bind.parameters:
                    return q
        if exact or not candidates:
            return None
        return candidates[0]

    def _diverge(self, request: str, kind: str, sql: str | None,
                 params: tuple[bytes | None, ...] | None) -> None:
        unused = self.unused()
        later = [q for q in unused if q.index > self._last]
        expected = later[0] if later else (unused[0] if unused else None)
        self.divergences.append(Divergence(self.number, request, kind, sql, params, expected))
        self._send(error_response(DIVERGENCE_SQLSTATE, DIVERGENCE_MESSAGE,
                                  detail=f"{request}: {_norm(sql) or '(no SQL)'}"))

    def _after_error(self) -> bytes:
        return _ready("E" if self._status in ("T", "E") else "I")

    def _simple(self, msg: Message, kind: str, sql: str) -> None:
        unit = self._find(kind, sql)
        if unit is None:
            self._diverge(msg.name, kind, sql, None)
            self._send(self._after_error())
            return
        self._use(unit)
        self._send(unit.steps[0].responses)
        self._copy_rest = [m for s in unit.steps for m in s.after_copy]

    def _choose(self, cur: _Current) -> None:
        if cur.unit is None:
            cur.unit = self._find("extended", cur.sql, cur.bind)
            if cur.unit is not None:
                self._use(cur.unit)
        elif cur.bind is not None and (cur.unit.parameters, cur.unit.result_formats) != (
                cur.bind.parameters, cur.bind.result_formats):
            better = self._find("extended", cur.sql, cur.bind, exact=True)
            if better is not None:
                self.used.discard(cur.unit.index)
                self._use(better)
                cur.unit = better

    def _answer_pending(self) -> None:
        cur = self._current
        pending, self._pending = self._pending, []
        for msg, sql in pending:
            if cur.sql is None and sql is not None:
                cur.sql = sql
            if cur.bind is None and isinstance(msg, Bind):
                cur.bind = msg
        if not cur.failed:
            self._choose(cur)
        unit, bind = cur.unit, cur.bind
        if (unit is not None and bind is not None and unit.parameters is not None
                and unit.parameters != bind.parameters and not cur.noted):
            cur.noted = True
            self.mismatches.append(ParameterMismatch(self.number, cur.sql, bind.parameters,
                                                     unit))
        for msg, _ in pending:
            self._answer(cur, msg)

    def _answer(self, cur: _Current, msg: Message) -> None:
        unit = cur.unit
        step_at = None
        if unit is not None and not (cur.failed and cur.ours):
            kind = getattr(msg, "kind", None)
            step_at = next((i for i in range(cur.pos + 1, len(unit.steps))
                            if type(unit.steps[i].request) is type(msg)
                            and getattr(unit.steps[i].request, "kind", None) == kind), None)
        if cur.failed:
            if isinstance(msg, Sync):
                if step_at is not None and unit is not None:
                    self._send(unit.steps[step_at].responses)
                else:
                    self._send(self._after_error())
            return
        if isinstance(msg, Flush):
            return
        if step_at is not None and unit is not None:
            cur.pos = step_at
            step = unit.steps[step_at]
            self._send(step.responses)
            self._copy_rest = list(step.after_copy)
            if any(isinstance(m, ErrorResponse) for m in step.responses):
                cur.failed = True
            return
        fixed = _FIXED.get(type(msg))
        if unit is not None and fixed is not None:
            self._send(fixed)
        elif unit is not None and isinstance(msg, Sync):
            self._send(_ready(self._status))
        else:
            self._diverge(msg.name, "extended", cur.sql,
                          None if cur.bind is None else cur.bind.parameters)
            cur.failed = cur.ours = True
            if isinstance(msg, Sync):
                self._send(self._after_error())
