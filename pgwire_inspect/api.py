"""The Python API: decode saved captures, or capture what a block of code sends.

Two entry points, both giving a `Capture`:

- `read_capture` decodes a pcap, pcapng or hex dump file.
- `capture` is a context manager that sniffs the traffic between this
  machine and one PostgreSQL server while the ``with`` block runs::

      from pgwire_inspect import capture

      with capture(engine) as cap:              # an Engine, AsyncEngine or DSN
          session.scalars(select(User)).all()   # any code: ORM, TestClient, httpx ...
      assert len(cap.statements) == 1
      print(cap.statements[0].sql, cap.statements[0].rows)

A `Capture` lists every query on the wire (`Capture.queries`, each a
`CapturedQuery` with decoded parameters and rows) and, in
`Capture.statements`, only the application's own: the driver's transaction
control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT ...) and the set-up that
SQLAlchemy's dialects and the drivers run on a new connection (server
version, current schema, type look-ups) are kept in ``queries`` but left
out of ``statements`` (see `CapturedQuery.kind`).

How `capture` works: it opens a raw packet socket
(`pgwire_inspect.capture.LiveCapture`, root or CAP_NET_RAW) before the
block runs, so every packet of the block is seen. A relay cannot be used:
an engine's connections go where its URL says. After the block it waits
until the traffic has settled (every query that started has its
ReadyForQuery, and each direction's last segment is acknowledged or a
short quiet period has passed), at most ``settle_timeout`` seconds; pooled
connections stay open, so it never waits for their FIN. Only traffic of the
block is decoded: connections with a message time-stamped within it, and
queries that started within it. With an Engine or AsyncEngine, only the
engine's connections used during the block are kept (their client ports are
read in SQLAlchemy's ``connect`` and ``checkout`` pool events); with a DSN,
every connection from this machine to that server is kept (an app served by
another process, called over HTTP, is captured that way).

A statement prepared before the block (asyncpg prepares each statement once
per pooled connection and later sends only Bind/Execute) shows with
``sql=None`` and its rows undecoded by type: start the block before the
engine connects (a new engine, or after ``engine.dispose()``) to see it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from .capture import (
    Frame,
    LiveCapture,
    decode_frame,
    looks_like_hexdump,
    open_capture,
    read_hexdump,
)
from .capture import write_pcap as _write_pcap
from .conversation import Connection, QueryExchange, WireMessage
from .decode import Decoded, decode_frames
from .errors import CaptureError, PgWireError
from .protocol import Bind, DataRow, ErrorResponse, Message, NoticeResponse

__all__ = [
    "QUERY_KINDS",
    "Capture",
    "CapturedQuery",
    "CapturedResult",
    "capture",
    "classify_sql",
    "decode_parameters",
    "read_capture",
]

#: The values of `CapturedQuery.kind`.
QUERY_KINDS = ("statement", "transaction", "setup", "prepare", "other")

#: Seconds `capture` waits at most for the traffic to settle after the block.
SETTLE_TIMEOUT = 2.0

_SNIFF_LEN = 8192

# -- what a query is for ---------------------------------------------------------

_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*", re.S)
_TRANSACTION = re.compile(
    r"(?:begin|start\s+transaction|commit|end|rollback|abort|savepoint|release"
    r"|prepare\s+transaction)\b", re.I)
# Set-up SQLAlchemy's PostgreSQL dialects and the drivers send on their own
# (measured with SQLAlchemy 2.1, psycopg2 2.9, psycopg 3.3, asyncpg 0.32), as
# lower-case text with whitespace collapsed; each is a prefix.
_SETUP_PREFIXES = (
    "select pg_catalog.version()",
    "select current_schema()",
    "show transaction isolation level",
    "show standard_conforming_strings",
    # psycopg2 dialect: hstore OIDs; psycopg 3 dialect: TypeInfo.fetch
    "select t.oid, typarray from pg_type t join pg_namespace ns on typnamespace = ns.oid "
    "where typname = 'hstore'",
    "select typname as name, oid, typarray as array_oid,",
    # asyncpg: introspection of types it does not know
    "select current_setting('jit')",
    "select set_config('jit',",
    "with recursive typeinfo_tree(",
)


def classify_sql(sql: str | None) -> str:
    """What a query is for, from its SQL text.

    Args:
        sql: the query text as it went on the wire, or None.

    Returns:
        "transaction" for transaction control (BEGIN, START TRANSACTION,
        COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE
        TRANSACTION); "setup" for what SQLAlchemy's dialects and the drivers
        send on their own (``select pg_catalog.version()``, ``select
        current_schema()``, ``show transaction isolation level``, ``show
        standard_conforming_strings``, the hstore and TypeInfo look-ups,
        asyncpg's type introspection) and for an empty query such as
        asyncpg's ping ``;``; "other" when there is no SQL text (a lone Sync,
        a statement prepared before the capture began); "statement" for
        everything else.
    """
    if sql is None:
        return "other"
    text = _COMMENTS.sub("", sql)
    if _TRANSACTION.match(text):
        return "transaction"
    flat = " ".join(text.lower().split()).rstrip("; ")
    if not flat or flat.startswith(_SETUP_PREFIXES):
        return "setup"
    return "statement"


def decode_parameters(conn: Connection, query: QueryExchange) -> list[Any]:
    """The Bind parameters of an extended-protocol query as Python values.

    Args:
        conn: the query's connection (its session's value decoder).
        query: the query.

    Returns:
        One value per parameter: None for NULL; the value psycopg's loader
        gives for the parameter's type OID (from Parse, or from
        ParameterDescription when Parse left it 0) and format; a text
        parameter of unspecified type as str; bytes when the type is
        unspecified in binary format or the bytes do not decode.

    Spec: PostgreSQL docs, "Message Formats", Bind (F), Parse (F).
    """
    out: list[Any] = []
    for oid, fmt, raw in query.parameters:
        if raw is None:
            out.append(None)
            continue
        if oid == 0 and fmt != 0:
            out.append(raw)
            continue
        try:
            out.append(conn.decoder.decode(oid or 25, fmt, raw))
        except PgWireError:
            out.append(raw)
    return out


# -- queries ----------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedResult:
    """One result set of a query.

    Attributes:
        columns: the column names, from RowDescription (empty when the query
            returned no rows, or was prepared before the capture began).
        rows: one tuple of Python values per DataRow (None for NULL); a value
            that does not decode is the `ValueDecodeError` saying why. Without
            a RowDescription (a statement prepared before the capture began)
            the types are unknown and each value is its bytes.
        command_tag: the CommandComplete tag ("SELECT 1", "INSERT 0 3"), or None.
    """

    columns: list[str]
    rows: list[tuple[Any, ...]]
    command_tag: str | None


class CapturedQuery:
    """One query on the wire with its answer, decoded to Python values.

    Attributes:
        connection: the decoded `Connection` it ran on.
        exchange: the underlying `QueryExchange` (every request and response).
        conn: the connection's number.
        sql: the query text (the Parse text for the extended protocol), or None.
        protocol: "simple" (Query), "extended" (Parse/Bind/Execute ... Sync)
            or "function" (FunctionCall).
        kind: what it is for: "statement", "transaction", "setup" or
            "other" from its SQL text (see `classify_sql`); "prepare" for an
            extended-protocol exchange without Execute (a statement prepared or
            described, not run); an Execute of a statement prepared before the
            capture began (no SQL text) is a "statement".
        statement: the prepared statement's name ("" unnamed), extended protocol only.
    """

    def __init__(self, connection: Connection, exchange: QueryExchange, *,
                 sampled_rows: dict[int, list[tuple[Any, ...]]] | None = None) -> None:
        self.connection = connection
        self.exchange = exchange
        self._sampled = sampled_rows
        self.conn = connection.id
        self.sql = exchange.sql
        self.statement = exchange.statement
        if self.statement is None:
            self.statement = next((w.message.statement for w in exchange.requests
                                   if isinstance(w.message, Bind)), None)
        self.protocol = exchange.kind
        self.kind = classify_sql(exchange.sql)
        if exchange.kind == "extended" and self.kind != "transaction":
            if not any(w.name == "Execute" for w in exchange.requests):
                self.kind = "prepare"  # Parse/Describe/Close without an Execute
            elif exchange.sql is None:
                self.kind = "statement"  # executes a statement prepared before the capture

    @property
    def is_transaction_control(self) -> bool:
        """True for BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE ... (``kind == "transaction"``)."""
        return self.kind == "transaction"

    @property
    def is_setup(self) -> bool:
        """True for the dialect's and driver's own set-up queries (``kind == "setup"``)."""
        return self.kind == "setup"

    @functools.cached_property
    def parameters(self) -> list[Any]:
        """The Bind parameters as Python values (see `decode_parameters`); [] for simple queries."""
        return decode_parameters(self.connection, self.exchange)

    @functools.cached_property
    def results(self) -> list[CapturedResult]:
        """Every result set, in order (a simple Query with several statements has several)."""
        conn, sampled = self.connection, self._sampled
        out = []
        for i, r in enumerate(self.exchange.results):
            if sampled is not None:
                rows = sampled.get(i, [])
            elif r.columns:
                rows = [tuple(conn.decode_row(r, row)) for row in r.rows]
            else:  # types and formats unknown: the values' bytes
                rows = [tuple(row.message.values) for row in r.rows
                        if isinstance(row.message, DataRow)]
            out.append(CapturedResult([c.name for c in r.columns], rows, r.tag))
        return out

    def _main(self) -> CapturedResult | None:
        return next((r for r in self.results if r.columns), None)

    @property
    def columns(self) -> list[str]:
        """The column names of the first result set that has columns ([] if none)."""
        main = self._main()
        return main.columns if main else []

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        """The rows of the first result set that has columns ([] if none); see `results`."""
        main = self._main()
        if main is None:
            return next((r.rows for r in self.results if r.rows), [])
        return main.rows

    @property
    def row_count(self) -> int:
        """DataRows received, over all result sets."""
        return self.exchange.row_count

    @property
    def command_tag(self) -> str | None:
        """The CommandComplete tag of the last result set that has one, or None."""
        return next((r.tag for r in reversed(self.exchange.results) if r.tag), None)

    @property
    def error(self) -> dict[str, str] | None:
        """The ErrorResponse fields by name (severity, code, message, detail ...), or None."""
        err = self.exchange.error
        if err is None or not isinstance(err.message, ErrorResponse):
            return None
        return dict(err.message.notice_fields)

    @property
    def notices(self) -> list[dict[str, str]]:
        """The fields of each NoticeResponse that arrived while the query ran."""
        return [dict(w.message.notice_fields) for w in self.exchange.responses
                if isinstance(w.message, NoticeResponse)]

    @property
    def duration(self) -> float | None:
        """Seconds from the first request message to ReadyForQuery, or None if unanswered."""
        return self.exchange.duration

    @property
    def started(self) -> float:
        """When the first request message was complete, seconds since the epoch."""
        return self.exchange.started

    @property
    def messages(self) -> list[Message]:
        """The query's protocol messages (requests and responses) in wire order."""
        return [w.message for w in self.exchange.messages]

    def __repr__(self) -> str:
        sql = None if self.sql is None else " ".join(self.sql.split())
        if sql is not None and len(sql) > 60:
            sql = sql[:57] + "..."
        return (f"CapturedQuery(conn={self.conn}, kind={self.kind!r}, sql={sql!r}, "
                f"rows={self.row_count}, tag={self.command_tag!r})")


# -- captures -----------------------------------------------------------------------


class Capture:
    """Decoded PostgreSQL traffic: connections, queries and messages.

    Made by `read_capture` and `capture`. While a `capture` block runs, each
    attribute shows what was captured so far; after the block it holds the
    block's traffic (see the module docstring).

    Args:
        decoded: what `pgwire_inspect.decode.decode_frames` made of ``frames``.
        frames: the frames decoded.
        until: show only connections with a message, and queries that
            started, by this time (seconds since the epoch); None: everything.
        client_ports: show only connections from these client ports; None: all.
        notices: see below.

    Attributes:
        notices: one-line remarks (a connection that switched to TLS, a
            capture that did not settle, problems of the capture file).
    """

    def __init__(self, decoded: Decoded, frames: list[Frame], *,
                 until: float | None = None, client_ports: Collection[int] | None = None,
                 notices: list[str] | None = None) -> None:
        self.notices: list[str] = list(notices or [])
        self._refresh: Callable[[], None] | None = None
        self._set(decoded, frames, until, client_ports)

    def _set(self, decoded: Decoded, frames: list[Frame], until: float | None,
             client_ports: Collection[int] | None) -> None:
        self._decoded = decoded
        self._until = until
        conns = decoded.connections
        if client_ports is not None:
            conns = [c for c in conns if c.client[1] in client_ports]
        if until is not None:
            conns = [c for c in conns if any(w.ts <= until for w in c.messages)]
        self._connections = conns
        self._queries = sorted(
            (CapturedQuery(c, q) for c in conns for q in c.queries
             if until is None or q.started <= until),
            key=lambda q: (q.started, q.conn, q.exchange.index))
        keys = {(c.client, c.server) for c in conns} | {(c.server, c.client) for c in conns}
        self._frames = frames if client_ports is None and until is None else [
            f for f in frames if _pair(f) in keys]

    def _fresh(self) -> None:
        if self._refresh is not None:
            self._refresh()

    @property
    def decoded(self) -> Decoded:
        """The pipeline's full result (`pgwire_inspect.decode.Decoded`), unfiltered."""
        self._fresh()
        return self._decoded

    @property
    def connections(self) -> list[Connection]:
        """The decoded connections (`pgwire_inspect.conversation.Connection`)."""
        self._fresh()
        return list(self._connections)

    @property
    def queries(self) -> list[CapturedQuery]:
        """Every query on the wire, in order of their first request message."""
        self._fresh()
        return list(self._queries)

    @property
    def statements(self) -> list[CapturedQuery]:
        """The application's own statements (``kind == "statement"``).

        Left out: transaction control, the dialect's and driver's set-up, and
        prepare-only exchanges (see `CapturedQuery.kind`).
        """
        return [q for q in self.queries if q.kind == "statement"]

    @property
    def wire_messages(self) -> list[WireMessage]:
        """Every message with its connection, frame and timestamp, in wire order."""
        self._fresh()
        keep: set[int] = set()
        if self._until is not None:
            keep = {id(w) for q in self._queries
                    for w in q.exchange.requests + q.exchange.responses}
        until = self._until
        out = [w for c in self._connections for w in c.messages
               if until is None or w.ts <= until or id(w) in keep]
        out.sort(key=lambda w: w.last_frame)
        return out

    @property
    def messages(self) -> list[Message]:
        """Every protocol message (`pgwire_inspect.protocol`), in wire order."""
        return [w.message for w in self.wire_messages]

    @property
    def frames(self) -> list[Frame]:
        """The captured frames of the connections shown."""
        self._fresh()
        return list(self._frames)

    def to_pcap(self, path: str | os.PathLike[str]) -> int:
        """Save the frames of the connections shown as a pcap file (Wireshark opens it).

        Args:
            path: the file to create or overwrite.

        Returns:
            The number of frames written.

        Raises:
            CaptureError: the file cannot be written.
        """
        return _write_pcap(path, self.frames)

    def __repr__(self) -> str:
        return (f"Capture({len(self.connections)} connection(s), {len(self.queries)} queries, "
                f"{len(self.statements)} statement(s))")


def _pair(frame: Frame) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """(source, destination) endpoints of a frame's TCP segment, or None."""
    try:
        seg = decode_frame(frame)
    except PgWireError:
        return None
    return None if seg is None else ((seg.src, seg.sport), (seg.dst, seg.dport))


def _notices(decoded: Decoded, connections: list[Connection]) -> list[str]:
    """The decoder's problems, and a line for each of ``connections`` that turned to TLS."""
    out = list(decoded.problems)
    for conn in connections:
        by = conn.state.encrypted_by
        if by:
            out.append(f"connection {conn.id} ({conn.client_text}) switched to {by}: its "
                       "messages cannot be decoded; connect with sslmode=disable (asyncpg: "
                       "ssl=False) to see them")
    return out


# -- reading files --------------------------------------------------------------------


def read_capture(source: str | os.PathLike[str] | BinaryIO, *,
                 port: int | Collection[int] | None = None) -> Capture:
    """Decode a saved capture: pcap, pcapng (gzip-compressed too) or a hex dump.

    The format is told by the content: a hex dump (Wireshark "Copy as Hex
    Dump", tcpdump -xx, od, hexdump -C, xxd) is text; anything else is read
    as a pcap or pcapng file.

    Args:
        source: a path, or a binary file object positioned at the start.
        port: the server port(s) to decode. None decodes port 5432 and finds
            PostgreSQL on any other port by the shape of its first messages.

    Returns:
        The `Capture`; problems of the file (a truncated last record ...) are
        in its ``notices``.

    Raises:
        CaptureError: the file cannot be read, or is neither a capture nor a hex dump.
    """
    ports = None if port is None else ((port,) if isinstance(port, int) else tuple(port))
    frames_src: Any
    if isinstance(source, str | os.PathLike):
        try:
            with open(source, "rb") as fh:
                head = fh.read(_SNIFF_LEN)
        except OSError as exc:
            raise CaptureError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}"
                               ) from None
        if looks_like_hexdump(head):
            with open(source, encoding="utf-8", errors="replace") as fh:
                frames_src = read_hexdump(fh.read())
        else:
            frames_src = open_capture(source)
    else:
        frames_src = _from_file_object(source)
    decoded = decode_frames(frames_src, ports=ports, keep_frames=True)
    notices = list(getattr(frames_src, "problems", [])) + _notices(decoded, decoded.connections)
    return Capture(decoded, decoded.kept_frames, notices=notices)


def _from_file_object(fh: BinaryIO) -> Any:
    seekable = False
    with contextlib.suppress(OSError, AttributeError, ValueError):
        seekable = fh.seekable()
    if seekable:
        start = fh.tell()
        head = fh.read(_SNIFF_LEN)
        fh.seek(start)
        if not looks_like_hexdump(head):
            return open_capture(fh)
        data = fh.read()
    else:
        data = fh.read()
        if not looks_like_hexdump(data[:_SNIFF_LEN]):
            return open_capture(io.BytesIO(data))
    return read_hexdump(data.decode("utf-8", "replace"))


# -- live capture -----------------------------------------------------------------------


@contextlib.contextmanager
def capture(target: Any, *, write_pcap: str | os.PathLike[str] | None = None,
            iface: str | None = None, settle_timeout: float = SETTLE_TIMEOUT
            ) -> Iterator[Capture]:
    """Capture the PostgreSQL traffic of a block of code.

    Args:
        target: where the server is: a SQLAlchemy ``Engine`` or ``AsyncEngine``
            (only its connections are kept), a ``URL``, or a DSN string
            (``postgresql://...`` or libpq ``host=... port=...``: every
            connection from this machine to that server is kept).
        write_pcap: save the block's frames to this pcap file afterwards.
        iface: the interface to sniff; None picks the one that reaches the
            server (loopback for 127.0.0.1 and ::1).
        settle_timeout: the longest wait after the block, in seconds, for
            unanswered queries and unacknowledged segments.

    Yields:
        A `Capture` that fills in while the block runs and holds the block's
        traffic once it has ended (also when the block raised).

    Raises:
        CaptureError: sniffing is not permitted (it needs root or CAP_NET_RAW;
            no relay can stand in for an engine's own connections), the URL
            names no TCP host, the interface does not exist, or ``write_pcap``
            cannot be written.
        TypeError: ``target`` is not an engine, URL or string.
    """
    from .watch import EngineTracker, server_of, settle

    host, port, engine = server_of(target)
    sniffer = LiveCapture(host, port, iface)
    try:
        sniffer.start()
    except CaptureError as exc:
        if "root or CAP_NET_RAW" in str(exc):
            raise CaptureError(
                f"capture() sniffs the connections of the block and {exc}; run as root or give "
                "the Python interpreter CAP_NET_RAW (setcap cap_net_raw+ep)") from None
        raise
    tracker = EngineTracker(engine) if engine is not None else None
    result = Capture(Decoded(), [])
    seen = [-1]

    def refresh() -> None:
        frames = sniffer.frames()
        if len(frames) != seen[0]:
            seen[0] = len(frames)
            ports = tracker.client_ports() if tracker else None
            result._set(decode_frames(frames, ports=(port,)), frames, None, ports)

    result._refresh = refresh
    try:
        if tracker is not None:
            tracker.attach()
        try:
            yield result
        finally:
            ended = time.time()
            if tracker is not None:
                tracker.detach()
            ports = tracker.client_ports() if tracker else None
            decoded, frames, notice = settle(sniffer, port, ended, ports, settle_timeout)
    finally:
        sniffer.stop()
    result._refresh = None
    result._set(decoded, frames, ended, ports)
    result.notices = [*_notices(decoded, result._connections), *([notice] if notice else [])]
    if sniffer.error is not None:
        result.notices.append(str(sniffer.error))
    if write_pcap is not None:
        result.to_pcap(write_pcap)
