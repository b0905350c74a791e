"""One connection's conversation: messages fed in, queries paired with responses out."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol import (
    Bind,
    Close,
    Column,
    CommandComplete,
    ConnectionParser,
    CopyBothResponse,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Flush,
    FunctionCall,
    MalformedMessage,
    Message,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    Query,
    ReadyForQuery,
    RowDescription,
    Sync,
)
from ..types import ValueDecoder, type_name
from ._model import CopyExchange, QueryExchange, ResultSet, WireMessage
from ._rows import RowDecoding

__all__ = ["Connection"]

_EXTENDED = (Parse, Bind, Describe, Execute, Close, Flush)
#: ``tuple.__new__``: makes a `WireMessage` without its Python-level ``__new__``.
_new_tuple = tuple.__new__
_ASYNC = (NoticeResponse, ParameterStatus, NotificationResponse)


@dataclass
class _Chunk:
    offset: int
    end: int
    frame: int
    ts: float


@dataclass
class _Statement:
    query: str
    parameter_types: tuple[int, ...] = ()
    columns: tuple[Column, ...] | None = None


class Connection(RowDecoding):
    """One TCP connection and its decoded PostgreSQL conversation.

    Attributes:
        id: 0-based number, in order of each connection's first packet.
        client, server: (IP address text, port).
        first_frame, first_ts: where the connection was first seen.
        handshake: whether the TCP SYN was seen.
        messages: every decoded message, in wire order (if kept).
        startup: messages of the startup phase (before the first query).
        idle: (queries seen before it, message) for each message that arrived while no
            query was running (NotificationResponse, ParameterStatus, Terminate ...).
        queries: the queries, in order.
        gaps: (direction, stream offset, length, frame before, frame after) of each hole.
        ended: direction → how it ended ("FIN", "RST", "end of capture").
        decoder: a `ValueDecoder` that follows the session's ParameterStatus.

    Options: ``row_limit`` keeps only the first rows of each result (and the last,
    in `ResultSet.last_row`) for views of huge results; ``query_limit`` keeps
    only the first queries (`query_count` counts them all); ``keep_messages``,
    ``keep_rows`` (DataRows on their result sets) and
    ``keep_queries`` (on `queries`) keep what the views need; ``on_row(conn,
    result, row)`` is called for each DataRow (``on_rows(conn, result, rows)``
    once for each run of DataRows of one result, after them) and ``on_query(conn, query)`` when
    a query's ReadyForQuery arrives, for consumers that keep nothing.
    """

    def __init__(self, conn: int, client: tuple[str, int], server: tuple[str, int],
                 frame: int, ts: float, handshake: bool, *, keep_messages: bool = True,
                 keep_rows: bool = True, keep_queries: bool = True,
                 on_row: Callable[[Connection, ResultSet, WireMessage], None] | None = None,
                 on_query: Callable[[Connection, QueryExchange], None] | None = None,
                 row_limit: int | None = None, query_limit: int | None = None,
                 on_rows: Callable[[Connection, ResultSet, list[WireMessage]], None] | None = None
                 ) -> None:
        self.id = conn
        #: The number the caller opened it with (`id` may be renumbered for display).
        self.key = conn
        self.client = client
        self.server = server
        self._client_text = self._endpoint(client)
        self._server_text = self._endpoint(server)
        self.first_frame = frame
        self.first_ts = ts
        self.handshake = handshake
        self.keep_messages = keep_messages
        self.keep_rows = keep_rows
        #: Rows kept per result (the first ones, and the last in `ResultSet.last_row`).
        self.row_limit = row_limit
        #: Queries kept in `queries`, at most (None: all).
        self.query_limit = query_limit
        self.keep_queries = keep_queries
        self.on_row = on_row
        self.on_rows = on_rows
        #: Where the builder sends this connection's messages (its own ``emit`` until
        #: the decoder knows the connection is PostgreSQL, then the caller's).
        self.emit: Callable[[WireMessage, Connection], None] | None = None
        #: Called with (connection, result, rows) for each run of DataRows instead
        #: of the per-message ``emit`` (set by whoever emits, e.g. the JSON writer).
        self.emit_rows: Callable[[Connection, ResultSet, list[WireMessage]], None] | None = None
        self.on_query = on_query
        #: Queries seen (also when they are not kept).
        self.query_count = 0
        self.parser = ConnectionParser()
        if not handshake:
            # Without the SYN the capture may have begun mid-connection.
            self.parser.frontend.start_midstream()
            self.parser.backend.start_midstream()
        self.messages: list[WireMessage] = []
        self.startup: list[WireMessage] = []
        self.idle: list[tuple[int, WireMessage]] = []
        self.queries: list[QueryExchange] = []
        self.gaps: list[tuple[str, int, int, int | None, int | None]] = []
        self.ended: dict[str, str] = {}
        self.decoder = ValueDecoder()
        #: Values `decode_row` could not decode, so far.
        self.value_errors = 0
        self.counts: dict[str, int] = {"F": 0, "B": 0}
        self.bytes: dict[str, int] = {"F": 0, "B": 0}
        self._begun = {"F": False, "B": False}
        self.malformed: list[WireMessage] = []
        self._chunks: dict[str, deque[_Chunk]] = {"F": deque(), "B": deque()}
        self._awaiting: deque[QueryExchange] = deque()
        self._open_extended: QueryExchange | None = None
        self._statements: dict[str, _Statement] = {}
        self._portals: dict[str, tuple[str, tuple[int, ...]]] = {}
        self._pending_describe: deque[tuple[QueryExchange, str, str]] = deque()
        # The DataRow decoded last, and its result.
        self._last_row: WireMessage | None = None
        self._last_result: ResultSet | None = None

    def relabel(self, new: dict[int, WireMessage]) -> None:
        """Replace kept messages by new ones (keyed by ``id()`` of the old ones).

        Used when a connection is renumbered after some messages were decoded.
        """
        def swap(items: list[WireMessage]) -> list[WireMessage]:
            return [new.get(id(w), w) for w in items]

        self.messages = swap(self.messages)
        self.startup = swap(self.startup)
        self.idle = [(n, new.get(id(w), w)) for n, w in self.idle]
        self.malformed = swap(self.malformed)
        for q in self.queries:
            q.requests = swap(q.requests)
            q.responses = swap(q.responses)
            if q.error is not None:
                q.error = new.get(id(q.error), q.error)
            for r in q.results:
                r.rows = swap(r.rows)
                if r.description is not None:
                    r.description = new.get(id(r.description), r.description)
                if r.complete is not None:
                    r.complete = new.get(id(r.complete), r.complete)

    @property
    def trailing(self) -> list[WireMessage]:
        """Messages after the last query's ReadyForQuery (Terminate, late notices ...)."""
        return [w for n, w in self.idle if n == self.query_count]

    def idle_after(self, query_index: int) -> list[WireMessage]:
        """Messages that arrived between query ``query_index`` and the next one."""
        return [w for n, w in self.idle if n == query_index + 1]

    def parser_messages(self) -> list[Message]:
        """The kept messages themselves, without their frame information."""
        return [wm.message for wm in self.messages]

    # ---------------------------------------------------------------- labels

    @staticmethod
    def _endpoint(addr: tuple[str, int]) -> str:
        ip, port = addr
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    @property
    def client_text(self) -> str:
        """The client as "ip:port" ("[addr]:port" for IPv6)."""
        return self._client_text

    @property
    def server_text(self) -> str:
        """The server as "ip:port" ("[addr]:port" for IPv6)."""
        return self._server_text

    @property
    def state(self) -> Any:
        """The protocol parser's `SessionState` (parameters, encryption ...)."""
        return self.parser.state

    @property
    def verdict(self) -> str:
        """What the connection holds: "PostgreSQL", "not PostgreSQL", "encrypted (TLS)" ..."""
        st = self.parser.state
        good = self.counts["F"] + self.counts["B"]
        if st.encrypted_by and good <= 2:
            return f"encrypted ({st.encrypted_by})"
        if good == 0 and self.malformed:
            return "not PostgreSQL"
        if good == 0:
            return "no PostgreSQL messages"
        if st.encrypted_by:
            return f"PostgreSQL, then encrypted ({st.encrypted_by})"
        return "PostgreSQL"

    # ---------------------------------------------------------------- input

    def feed(self, direction: str, offset: int, data: bytes, frame: int, ts: float,
             emit: Callable[[WireMessage, Connection], None] | None = None) -> None:
        """Feed the next contiguous bytes of one direction.

        Args:
            direction: "F" or "B".
            offset: stream offset of ``data[0]``.
            data: the bytes.
            frame: number of the frame that carried them.
            ts: that frame's timestamp, seconds since the epoch.
            emit: called with each message decoded and its connection, in order.
        """
        if not data:
            return
        p = self.parser.parser(direction)
        if not self._begun[direction]:
            self._begun[direction] = True
            if offset != p.offset:
                p.offset = offset  # the stream as captured starts at this offset
        self.bytes[direction] += len(data)
        self._chunks[direction].append(_Chunk(offset, offset + len(data), frame, ts))
        p.receive_data(data)
        self._drain(direction, frame, ts, emit)

    def gap(self, direction: str, offset: int, length: int, frame_before: int | None,
            frame_after: int | None) -> None:
        """Record that ``length`` bytes at stream ``offset`` are missing from the capture."""
        self.gaps.append((direction, offset, length, frame_before, frame_after))
        p = self.parser.parser(direction)
        if not self._begun[direction]:
            self._begun[direction] = True
            if offset != p.offset:
                p.offset = offset  # the stream as captured starts with this hole
        p.receive_gap(length)

    def end(self, direction: str, reason: str, frame: int | None, ts: float | None,
            emit: Callable[[WireMessage, Connection], None] | None = None) -> None:
        """The direction's stream has ended (FIN, RST, or the end of the capture)."""
        self.ended.setdefault(direction, reason)
        p = self.parser.parser(direction)
        p.finish()
        last = self._chunks[direction][-1] if self._chunks[direction] else None
        self._drain(direction, frame or (last.frame if last else 0),
                    ts or (last.ts if last else 0.0), emit)

    # ------------------------------------------------------------- internals

    def _frame_of(self, direction: str, offset: int) -> int:
        chunks = self._chunks[direction]
        while len(chunks) > 1 and chunks[0].end <= offset:
            chunks.popleft()
        for c in chunks:
            if c.offset <= offset < c.end:
                return c.frame
        return chunks[-1].frame if chunks else 0

    def _drain(self, direction: str, frame: int, ts: float,
               emit: Callable[[WireMessage, Connection], None] | None) -> None:
        msgs = self.parser.parser(direction).next_messages()
        n = len(msgs)
        i = 0
        while i < n:
            msg = msgs[i]
            if msg.__class__ is DataRow and self._awaiting:
                i = self._data_rows(msgs, i, direction, frame, ts, emit)
                continue
            i += 1
            # (self.id is read each time: the router may renumber the connection
            # while its first messages are emitted.)
            wm: WireMessage = _new_tuple(WireMessage, (msg, self.id, self._frame_of(
                direction, msg.offset), frame, ts))
            if msg.__class__ is MalformedMessage:
                self.malformed.append(wm)
            else:
                self.counts[direction] += 1
            if self.keep_messages:
                self.messages.append(wm)
            self._pair(wm)
            if emit is not None:
                emit(wm, self)

    def _data_rows(self, msgs: list[Message], i: int, direction: str, frame: int, ts: float,
                   emit: Callable[[WireMessage, Connection], None] | None) -> int:
        """Take the run of DataRows from ``msgs[i]`` (rows of the current query's
        result: the hot path of big results); return the index after the run."""
        n = len(msgs)
        j = i + 1
        while j < n and msgs[j].__class__ is DataRow:
            j += 1
        q = self._awaiting[0]
        results = q.results
        if results and results[-1].complete is None:
            result = results[-1]
        else:
            result = self._current_result(q)
        if result.formats_from_bind:
            self._bind_formats(q, result)
        self.counts[direction] += j - i
        keep, keep_rows, limit = self.keep_messages, self.keep_rows, self.row_limit
        on_row = self.on_row
        emit_rows = self.emit_rows if emit is not None else None
        if emit_rows is not None:
            emit = None  # the run goes to emit_rows, at its end
        batch: list[WireMessage] | None = (
            [] if self.on_rows is not None or emit_rows is not None else None)
        wheres = self._frames_of(direction, msgs, i, j)
        if batch is not None and not keep and not keep_rows and on_row is None and emit is None:
            # Nothing to do per row but make it: the streaming consumers' case.
            conn_id = self.id
            batch = [_new_tuple(WireMessage, (msgs[k], conn_id, where, frame, ts))
                     for k, where in zip(range(i, j), wheres, strict=True)]
            result.row_count += j - i
            self._last_row = batch[-1]
            self._last_result = result
        else:
            for k, where in zip(range(i, j), wheres, strict=True):
                wm: WireMessage = _new_tuple(WireMessage, (msgs[k], self.id, where, frame, ts))
                if keep:
                    self.messages.append(wm)
                result.row_count += 1
                if keep_rows:
                    if limit is None or result.row_count <= limit:
                        result.rows.append(wm)
                        q.responses.append(wm)
                    else:
                        result.last_row = wm  # rows beyond the limit: only the last is kept
                self._last_row = wm
                self._last_result = result
                if on_row is not None:
                    on_row(self, result, wm)
                if batch is not None:
                    batch.append(wm)
                if emit is not None:
                    emit(wm, self)
        if batch:
            if self.on_rows is not None:
                self.on_rows(self, result, batch)
            if emit_rows is not None:
                emit_rows(self, result, batch)
        return j

    def _frames_of(self, direction: str, msgs: list[Message], i: int, j: int) -> list[int]:
        """The frame holding the first byte of each of ``msgs[i:j]`` (in stream order)."""
        chunks = self._chunks[direction]
        first = chunks[0] if chunks else None
        out: list[int] = []
        for k in range(i, j):
            offset = msgs[k].offset
            if first is not None and first.offset <= offset < first.end:
                out.append(first.frame)
            else:
                out.append(self._frame_of(direction, offset))  # drops the chunks before offset
                first = chunks[0] if chunks else None
        return out

    def _new_query(self, kind: str, wm: WireMessage) -> QueryExchange:
        q = QueryExchange(self.query_count, self.id, kind, started=wm.ts)
        self.query_count += 1
        if self.keep_queries and (self.query_limit is None
                                  or len(self.queries) < self.query_limit):
            self.queries.append(q)
        self._awaiting.append(q)
        return q

    def _pair(self, wm: WireMessage) -> None:
        msg = wm.message
        if msg.direction == "F":
            self._pair_frontend(wm, msg)
        else:
            self._pair_backend(wm, msg)

    def _pair_frontend(self, wm: WireMessage, msg: Message) -> None:
        if isinstance(msg, Query):
            q = self._new_query("simple", wm)
            q.sql = msg.sql
            q.requests.append(wm)
        elif isinstance(msg, FunctionCall):
            q = self._new_query("function", wm)
            q.requests.append(wm)
            q.sql = f"function call, OID {msg.function_oid}"
        elif isinstance(msg, _EXTENDED):
            q = self._open_extended or self._new_query("extended", wm)
            self._open_extended = q
            q.requests.append(wm)
            self._extended_request(q, msg)
        elif isinstance(msg, Sync):
            q = self._open_extended or self._new_query("extended", wm)
            q.requests.append(wm)
            q.sent_sync = True
            self._open_extended = None
        elif self._awaiting:
            q = self._awaiting[-1]
            q.requests.append(wm)  # CopyData, CopyDone, CopyFail ...
            self._copy_message(q, wm, msg)
        elif self.query_count:
            self.idle.append((self.query_count, wm))  # Terminate, or bytes between queries
        else:
            self.startup.append(wm)

    def _extended_request(self, q: QueryExchange, msg: Message) -> None:
        if isinstance(msg, Parse):
            self._statements[msg.statement] = _Statement(msg.query, msg.parameter_types)
            if q.sql is None:
                q.sql, q.statement = msg.query, msg.statement
        elif isinstance(msg, Bind):
            stmt = self._statements.get(msg.statement)
            if q.sql is None and stmt is not None:
                q.sql, q.statement = stmt.query, msg.statement
            types = stmt.parameter_types if stmt else ()
            n = len(msg.parameters)
            fmts = msg.parameter_formats
            for i, value in enumerate(msg.parameters):
                fmt = fmts[i] if len(fmts) == n else (fmts[0] if fmts else 0)
                q.parameters.append((types[i] if i < len(types) else 0, fmt, value))
            self._portals[msg.portal] = (msg.statement, msg.result_formats)
        elif isinstance(msg, Describe):
            self._pending_describe.append((q, msg.kind, msg.target))
        elif isinstance(msg, Execute) and q.sql is None:
            # A portal bound by an earlier query (a cursor fetched in chunks).
            bound = self._portals.get(msg.portal)
            stmt = self._statements.get(bound[0]) if bound is not None else None
            if stmt is not None and bound is not None:
                q.sql, q.statement = stmt.query, bound[0]

    @staticmethod
    def _copy_message(q: QueryExchange, wm: WireMessage, msg: Message) -> None:
        if q.copy is None:
            return
        if isinstance(msg, CopyData):
            q.copy.data.append(wm)
        elif isinstance(msg, CopyDone):
            q.copy.done = wm
        elif isinstance(msg, CopyFail):
            q.copy.failed = wm

    def _result_formats(self, portal: str, ncols: int) -> tuple[int, ...]:
        _, formats = self._portals.get(portal, ("", ()))
        if not formats:
            return (0,) * ncols
        if len(formats) == 1:
            return formats * ncols
        return tuple(formats[:ncols]) + (0,) * max(0, ncols - len(formats))

    def _current_result(self, q: QueryExchange) -> ResultSet:
        if not q.results or q.results[-1].complete is not None:
            columns: tuple[Column, ...] = ()
            formats: tuple[int, ...] = ()
            if q.kind == "extended":
                stmt = self._statements.get(q.statement or "")
                if stmt is not None and stmt.columns is not None:
                    columns = stmt.columns
                    formats = self._result_formats(self._last_portal(q), len(columns))
            q.results.append(ResultSet(None, columns, formats))
        return q.results[-1]

    def _bind_formats(self, q: QueryExchange, result: ResultSet) -> None:
        """Take a statement-described result's formats from its portal's Bind."""
        result.formats = self._result_formats(self._last_portal(q), len(result.columns))
        result.formats_from_bind = False

    @staticmethod
    def _last_portal(q: QueryExchange) -> str:
        for wm in reversed(q.requests):
            if isinstance(wm.message, Execute | Bind):
                return wm.message.portal
        return ""

    def _pair_backend(self, wm: WireMessage, msg: Message) -> None:
        if isinstance(msg, ParameterStatus):
            self.decoder.set_parameter(msg.parameter, msg.value)
        q = self._awaiting[0] if self._awaiting else None
        if q is None:
            if self.query_count:
                self.idle.append((self.query_count, wm))
            else:
                self.startup.append(wm)
            return
        # (DataRows while a query is awaited never come here: see _data_rows.)
        q.responses.append(wm)
        if isinstance(msg, _ASYNC):
            return
        if isinstance(msg, CopyInResponse | CopyOutResponse | CopyBothResponse):
            kind = {"CopyInResponse": "in", "CopyOutResponse": "out"}.get(msg.name, "both")
            q.copy = CopyExchange(kind, wm, msg.format, msg.column_formats)
        elif isinstance(msg, CopyData | CopyDone):
            self._copy_message(q, wm, msg)
        elif isinstance(msg, RowDescription):
            pending = self._pending_describe.popleft() if self._pending_describe else None
            if pending is not None and pending[1] == "S":
                stmt = self._statements.get(pending[2])
                if stmt is not None:
                    stmt.columns = msg.columns
                # A statement's RowDescription says format 0; Bind's result formats rule.
                formats = self._result_formats(self._last_portal(q), len(msg.columns))
            else:
                formats = tuple(c.format for c in msg.columns)
            if q.results and q.results[-1].complete is None and not q.results[-1].row_count:
                q.results.pop()
            q.results.append(ResultSet(wm, msg.columns, formats,
                                       formats_from_bind=pending is not None and pending[1] == "S"))
        elif isinstance(msg, ParameterDescription):
            if self._pending_describe and self._pending_describe[0][1] == "S":
                stmt = self._statements.get(self._pending_describe[0][2])
                if stmt is not None:
                    stmt.parameter_types = msg.parameter_types
        elif msg.name == "NoData":
            if self._pending_describe:
                self._pending_describe.popleft()
        elif isinstance(msg, CommandComplete | EmptyQueryResponse) or msg.name == "PortalSuspended":
            self._current_result(q).complete = wm
        elif isinstance(msg, ErrorResponse):
            q.error = wm
            self._pending_describe.clear()
        elif isinstance(msg, ReadyForQuery):
            q.status = msg.status
            q.ended = wm.ts
            self._awaiting.popleft()
            self._pending_describe.clear()
            if self.on_query is not None:
                self.on_query(self, q)

    # ---------------------------------------------------------------- values

    def result_of(self, row: WireMessage) -> ResultSet | None:
        """The result set a DataRow belongs to (fast for the row decoded last)."""
        if self._last_row is row:
            return self._last_result
        for q in self.queries:
            for r in q.results:
                if any(w is row for w in r.rows):
                    return r
        return None

    def column_type(self, column: Column) -> str:
        """The column's type name with its typmod, e.g. ``varchar(40)``."""
        return type_name(column.type_oid, column.typmod)
