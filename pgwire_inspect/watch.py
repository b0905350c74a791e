"""Following live PostgreSQL traffic: every connection to a port, decoded as it arrives.

The library side of ``pgwire-inspect watch``, and of `pgwire_inspect.api.capture`'s
wait for the traffic to settle:

- `PortSniffer` reads raw frames from a packet socket (scapy's
  ``L2listen``, as `pgwire_inspect.capture.LiveCapture` does) and yields the
  TCP segments to or from one port, whatever the address, as they arrive. It
  keeps nothing, so it can run for hours.
- `Watcher` feeds frames through the decoding pipeline
  (`pgwire_inspect.decode.decode_frames`) and calls back as each query
  completes (`pgwire_inspect.api.CapturedQuery`, rows sampled), as each
  connection starts, and when a connection turns to TLS. Memory stays
  bounded: messages, rows and finished queries are not kept.
- `AckTracker` and `settle` tell when a live capture's traffic has settled:
  every query answered (ReadyForQuery) and every segment acknowledged;
  `EngineTracker` learns which connections are a SQLAlchemy engine's, and
  `server_of` where an engine's or DSN's server is.

Nothing here prints; the CLI (``cli_watch.py``) renders the callbacks.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from types import TracebackType
from typing import Any

from .api import CapturedQuery
from .capture import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Frame, LiveCapture, decode_frame
from .conversation import Connection, QueryExchange, ResultSet, WireMessage
from .decode import Decoded, decode_frames
from .errors import CaptureError, PgWireError
from .protocol import GSSENCResponse, SSLResponse, StartupMessage
from .stats import StatsCollector

__all__ = ["AckTracker", "EngineTracker", "PortSniffer", "Watcher", "server_of", "settle",
           "tls_advice"]

_MAX_FRAME = 262144
#: Seconds spent at most, after `PortSniffer.stop`, reading frames the kernel already holds.
DRAIN_SECONDS = 0.25
_RECV_BUFFER = 64 << 20
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# ARPHRD_* (linux/if_arp.h) of a packet socket -> LINKTYPE_* of its frames.
_ARPHRD_LINKTYPES = {1: 1, 772: 1, 65534: 101}
_MASK = 0xFFFFFFFF


def tls_advice(conn: Connection, by: str) -> str:
    """The one-line notice for a connection that switched to TLS or GSSAPI encryption.

    Args:
        conn: the connection.
        by: "TLS" or "GSSAPI".

    Returns:
        What happened and how to turn it off for local debugging.
    """
    asked = "SSLRequest answered 'S'" if by == "TLS" else "GSSENCRequest answered 'G'"
    return (f"connection {conn.id} ({conn.client_text} → {conn.server_text}) switched to {by} "
            f"({asked}): its messages cannot be decoded. For local debugging turn encryption "
            "off in the app's DSN: sslmode=disable (psycopg, psycopg2, libpq), ssl=disable "
            "(asyncpg)" + (", gssencmode=disable" if by == "GSSAPI" else ""))


# -- the sniffer --------------------------------------------------------------------


class PortSniffer:
    """Yield the frames of every TCP connection to or from one port, as they arrive.

    Typical use::

        with PortSniffer(5432) as sniffer:        # the socket is open from here on
            for frame in sniffer.frames():        # until stop() (a signal handler may call it)
                ...

    Args:
        port: the TCP port (the server side of the connections).
        iface: the interface to listen on; None: the loopback interface, which
            carries every connection between programs on this machine (also to
            its own non-loopback addresses).

    Attributes:
        port, iface: as given (``iface`` filled in by `start`).
        linktype: the LINKTYPE of the frames (Linux loopback and Ethernet: 1).
        count: frames yielded so far.

    Linux loopback shows every packet twice (out and in); both are yielded and
    the reassembly drops the duplicate.
    """

    def __init__(self, port: int, iface: str | None = None) -> None:
        self.port = port
        self.iface = iface
        self.linktype = 1
        self.count = 0
        self._sock: Any = None
        self._wake_r = self._wake_w = -1
        self._stopping = False

    def start(self) -> PortSniffer:
        """Open the packet socket; packets sent from now on are seen.

        Returns:
            self.

        Raises:
            CaptureError: "live capture needs root or CAP_NET_RAW: ..." without
                permission; "cannot capture on interface X: ..." for an unknown
                or down interface.
        """
        if self._sock is not None:
            return self
        for module in ("scapy.arch", "scapy.layers.l2"):
            importlib.import_module(module)
        from scapy.config import conf

        if self.iface is None:
            self.iface = str(conf.loopback_name)
        try:
            sock = conf.L2listen(iface=self.iface, promisc=False)
        except PermissionError as exc:
            raise CaptureError(f"live capture needs root or CAP_NET_RAW: {exc}") from None
        except Exception as exc:  # OSError, or scapy's own errors for unknown interfaces
            raise CaptureError(f"cannot capture on interface {self.iface!r}: {exc}") from None
        try:
            self.linktype = self._linktype(conf, sock)
            try:  # as root, beyond net.core.rmem_max
                sock.ins.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RECV_BUFFER)
            except OSError:
                with contextlib.suppress(OSError):
                    sock.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
            sock.ins.setblocking(False)
            self._wake_r, self._wake_w = os.pipe()
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return self

    @staticmethod
    def _linktype(conf: Any, sock: Any) -> int:
        with contextlib.suppress(OSError, IndexError, TypeError):
            hatype = sock.ins.getsockname()[3]
            if hatype in _ARPHRD_LINKTYPES:
                return _ARPHRD_LINKTYPES[hatype]
        linktype = conf.l2types.layer2num.get(sock.LL)
        if linktype is None:
            raise CaptureError(f"cannot tell the link type of interface {sock.iface!r}")
        return int(linktype)

    def stop(self) -> None:
        """Make `frames` return (safe to call from a signal handler or another thread)."""
        self._stopping = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called."""
        return self._stopping

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._stopping = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> PortSniffer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def frames(self, duration: float | None = None) -> Iterator[Frame]:
        """The frames of the port's connections, as they arrive, until `stop` or ``duration``.

        When stopped, the frames the kernel already holds are still read (for
        at most `DRAIN_SECONDS`), so a query answered just before Ctrl-C shows.

        Args:
            duration: stop after this many seconds; None: only `stop` ends it.

        Yields:
            Frames numbered 1.. in arrival order, with the kernel's receive
            timestamp (seconds since the epoch) and ``wirelen == len(data)``.

        Raises:
            CaptureError: `start` was not called, or the socket failed.
        """
        if self._sock is None:
            raise CaptureError("PortSniffer.frames() before start()")
        fd, wake = self._sock.ins.fileno(), self._wake_r
        deadline = None if duration is None else time.monotonic() + duration
        while not self._stopping:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            try:
                ready, _, _ = select.select([fd, wake], [], [], timeout)
            except OSError as exc:
                raise CaptureError(f"live capture on {self.iface} failed: {exc}") from None
            if wake in ready:
                break
            if fd in ready:
                yield from self._read(None)
        yield from self._read(time.monotonic() + DRAIN_SECONDS)

    def _read(self, until: float | None) -> Iterator[Frame]:
        """Read what the socket holds; until None: also stop at `stop`, else at ``until``."""
        recv_raw = self._sock.recv_raw
        while (not self._stopping) if until is None else time.monotonic() < until:
            try:
                _cls, data, ts = recv_raw(_MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                raise CaptureError(f"live capture on {self.iface} failed: {exc}") from None
            if not data:
                continue
            frame = Frame(self.count + 1, ts if ts is not None else time.time(),
                          self.linktype, data, len(data))
            try:
                seg = decode_frame(frame)
            except PgWireError:
                continue
            if seg is None or self.port not in (seg.sport, seg.dport):
                continue
            self.count += 1
            yield frame

    def __repr__(self) -> str:
        state = "open" if self._sock is not None else "closed"
        return f"PortSniffer(port {self.port} on {self.iface}, {state}, {self.count} frames)"


# -- the watcher ------------------------------------------------------------------------


class Watcher:
    """Decode frames incrementally and call back as queries complete.

    Args:
        port: the PostgreSQL server port whose connections are decoded.
        on_query: called with each query once its ReadyForQuery arrives, as a
            `CapturedQuery` whose ``rows`` hold at most ``sample_rows`` rows of
            each result (``row_count`` counts them all).
        on_connection: called with a connection and its StartupMessage
            parameters (user, database, application_name ...) when it starts,
            or with None for a connection already open when watching began.
        on_notice: called with a one-line notice (a connection turned to TLS).
        on_message: called with every message and its connection, in order.
        sample_rows: rows kept per result for ``on_query``.
        stats: a `StatsCollector` to feed (queries, rows, latencies).
    """

    def __init__(self, port: int, *,
                 on_query: Callable[[CapturedQuery], None] | None = None,
                 on_connection: Callable[[Connection, dict[str, str] | None], None] | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 on_message: Callable[[WireMessage, Connection], None] | None = None,
                 sample_rows: int = 3, stats: StatsCollector | None = None) -> None:
        self.port = port
        self.on_query = on_query
        self.on_connection = on_connection
        self.on_notice = on_notice
        self.on_message = on_message
        self.sample_rows = sample_rows
        self.stats = stats
        self._announced: set[int] = set()
        self._encrypted: set[int] = set()
        self._samples: dict[int, tuple[ResultSet, list[tuple[Any, ...]]]] = {}

    def run(self, frames: Iterable[Frame]) -> Decoded:
        """Decode ``frames`` (a live `PortSniffer.frames` or any frames), calling back.

        Args:
            frames: the frames, in capture order; may block between frames.

        Returns:
            The `Decoded` result once ``frames`` ends (connections kept without
            their messages or queries; counts, bytes and verdicts are there).
        """
        return decode_frames(frames, ports=(self.port,), keep_messages=False, keep_rows=False,
                             keep_queries=False, emit=self._emit, on_row=self._row,
                             on_query=self._query)

    def _emit(self, wm: WireMessage, conn: Connection) -> None:
        msg = wm.message
        if conn.key not in self._announced and self.on_connection is not None:
            if isinstance(msg, StartupMessage):
                self._announced.add(conn.key)
                self.on_connection(conn, dict(msg.parameters))
            elif not conn.handshake:  # already open when watching began
                self._announced.add(conn.key)
                self.on_connection(conn, None)
        if (isinstance(msg, SSLResponse | GSSENCResponse) and msg.answer in ("S", "G")
                and conn.key not in self._encrypted):
            self._encrypted.add(conn.key)
            if self.on_notice is not None:
                self.on_notice(tls_advice(conn, "TLS" if msg.answer == "S" else "GSSAPI"))
        if self.on_message is not None:
            self.on_message(wm, conn)

    def _row(self, conn: Connection, result: ResultSet, row: WireMessage) -> None:
        if self.stats is not None:
            self.stats.on_row(conn, result, row)
        entry = self._samples.get(id(result))
        if entry is None or entry[0] is not result:
            entry = self._samples[id(result)] = (result, [])
        if len(entry[1]) < self.sample_rows:
            entry[1].append(tuple(conn.decode_row(result, row)))

    def _query(self, conn: Connection, q: QueryExchange) -> None:
        if self.stats is not None:
            self.stats.on_query(conn, q)
        sampled: dict[int, list[tuple[Any, ...]]] = {}
        for i, result in enumerate(q.results):
            entry = self._samples.pop(id(result), None)
            if entry is not None and entry[0] is result:
                sampled[i] = entry[1]
        if self.on_query is not None:
            self.on_query(CapturedQuery(conn, q, sampled_rows=sampled))


# -- which connections are an engine's -------------------------------------------------


def server_of(target: Any) -> tuple[str, int, Any]:
    """Where a `pgwire_inspect.api.capture` target's server is.

    Args:
        target: a SQLAlchemy Engine or AsyncEngine, a URL, or a DSN string
            (``postgresql://...`` or libpq ``host=... port=...``).

    Returns:
        (host, port, the sync Engine or None). The first host of a list.

    Raises:
        CaptureError: the DSN does not parse, or names no TCP host (a Unix socket).
        TypeError: ``target`` is none of these.
    """
    from sqlalchemy.engine import URL, Engine, make_url
    from sqlalchemy.exc import ArgumentError

    engine = getattr(target, "sync_engine", target)  # AsyncEngine -> its Engine
    if isinstance(engine, Engine):
        url: Any = engine.url
    elif isinstance(target, URL):
        url, engine = target, None
    elif isinstance(target, str):
        engine = None
        if "://" in target:
            try:
                url = make_url(target)
            except ArgumentError as exc:
                raise CaptureError(f"not a database URL: {exc}") from None
        else:  # libpq keyword/value string: "host=... port=..."
            from psycopg.conninfo import conninfo_to_dict

            try:
                kw = conninfo_to_dict(target)
            except Exception as exc:
                raise CaptureError(f"not a connection string: {exc}") from None
            host, port = kw.get("host"), kw.get("port")
            url = make_url("postgresql://").set(host=str(host) if host else None,
                                                port=int(str(port)) if port else None)
    else:
        raise TypeError(f"capture() takes an Engine, AsyncEngine, URL or DSN string, not "
                        f"{type(target).__name__}")
    host = url.host or url.query.get("host")
    if isinstance(host, tuple):
        host = host[0] if host else None
    if not host or str(host).startswith("/"):
        raise CaptureError("the database URL names no TCP host, so the driver uses a Unix "
                           "socket, which cannot be sniffed: give host=127.0.0.1 (or localhost)")
    port = url.port or url.query.get("port") or 5432
    return str(host).split(",")[0], int(str(port).split(",")[0]), engine


def _client_port(dbapi_connection: Any) -> int | None:
    """The local TCP port of a psycopg2, psycopg 3 or asyncpg connection (None if unknown)."""
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    with contextlib.suppress(Exception):
        transport = getattr(driver, "_transport", None)  # asyncpg.Connection
        if transport is not None:
            name = transport.get_extra_info("sockname")
        else:
            with socket.socket(fileno=os.dup(driver.fileno())) as sock:
                name = sock.getsockname()
        if isinstance(name, tuple):
            return int(name[1])
    return None


class EngineTracker:
    """Learns the client ports of the connections an engine uses, from SQLAlchemy's events.

    Between `attach` and `detach` it listens to the engine's ``connect`` and
    ``checkout`` pool events and its ``before_cursor_execute`` event, and reads
    each DBAPI connection's local TCP port (psycopg2, psycopg 3, asyncpg).

    Args:
        engine: a sync ``Engine`` (an AsyncEngine's ``sync_engine``).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.ports: set[int] = set()
        self.unknown = False
        self._lock = threading.Lock()
        self._hooks: list[tuple[str, Callable[..., None]]] = [
            ("connect", self._pool), ("checkout", self._pool),
            ("before_cursor_execute", self._execute)]

    def attach(self) -> None:
        """Start listening to the engine's events."""
        from sqlalchemy import event

        for name, fn in self._hooks:
            event.listen(self.engine, name, fn)

    def detach(self) -> None:
        """Stop listening (idempotent)."""
        from sqlalchemy import event

        for name, fn in self._hooks:
            with contextlib.suppress(Exception):
                event.remove(self.engine, name, fn)

    def _add(self, dbapi_connection: Any) -> None:
        port = _client_port(dbapi_connection)
        with self._lock:
            if port is None:
                self.unknown = True
            else:
                self.ports.add(port)

    def _pool(self, dbapi_connection: Any, *_: Any) -> None:
        self._add(dbapi_connection)

    def _execute(self, conn: Any, *_: Any) -> None:
        with contextlib.suppress(Exception):
            self._add(conn.connection.dbapi_connection)

    def client_ports(self) -> set[int] | None:
        """The ports seen, or None (keep every connection) when one could not be read."""
        with self._lock:
            return None if self.unknown else set(self.ports)


# -- knowing when live traffic has settled ---------------------------------------------


class AckTracker:
    """Per TCP direction: where the last segment sent by a time ends, and the peer's highest ACK.

    Feed it a live capture's growing frame list; it reads only the new frames.
    Sequence numbers compare modulo 2**32 (RFC 9293, section 3.4); SYN and FIN
    occupy one sequence number each.

    Args:
        until: only segments captured by then (seconds since the epoch) count
            as sent; acknowledgments count whenever they come. None: all.
    """

    def __init__(self, until: float | None = None) -> None:
        self.until = until
        self.sent: dict[tuple[Any, Any], int] = {}
        self.acked: dict[tuple[Any, Any], int] = {}
        self.reset: set[frozenset[Any]] = set()
        self.seen = 0

    @staticmethod
    def _later(a: int, b: int) -> bool:
        return a != b and ((a - b) & _MASK) < (1 << 31)

    def feed(self, frames: list[Frame]) -> None:
        """Read ``frames[self.seen:]`` (the frames not read yet)."""
        for frame in frames[self.seen:]:
            try:
                seg = decode_frame(frame)
            except PgWireError:
                continue
            if seg is None:
                continue
            src, dst = (seg.src, seg.sport), (seg.dst, seg.dport)
            if seg.flags & TCP_RST:
                self.reset.add(frozenset((src, dst)))
            end = (seg.seq + len(seg.payload) + seg.missing
                   + bool(seg.flags & TCP_SYN) + bool(seg.flags & TCP_FIN)) & _MASK
            old = self.sent.get((src, dst))
            if (self.until is None or frame.ts <= self.until) and (
                    old is None or self._later(end, old)):
                self.sent[(src, dst)] = end
            if seg.flags & TCP_ACK:  # acknowledges what dst sent to src
                old = self.acked.get((dst, src))
                if old is None or self._later(seg.ack, old):
                    self.acked[(dst, src)] = seg.ack
        self.seen = len(frames)

    def settled(self, conn: Connection) -> bool:
        """Whether each side of ``conn`` has had what it sent (by ``until``) acknowledged.

        A connection that was reset counts as settled.
        """
        if frozenset((conn.client, conn.server)) in self.reset:
            return True
        for key in ((conn.client, conn.server), (conn.server, conn.client)):
            end = self.sent.get(key)
            if end is not None:
                ack = self.acked.get(key)
                if ack is None or self._later(end, ack):
                    return False
        return True


def _open_queries(decoded: Decoded, until: float, ports: Collection[int] | None) -> int:
    """Queries started by ``until`` on connections not closed that have no ReadyForQuery."""
    n = 0
    for c in decoded.connections:
        if (ports is not None and c.client[1] not in ports) or any(
                r in ("FIN", "RST") for r in c.ended.values()):
            continue
        n += sum(1 for q in c.queries if q.started <= until and q.ended is None)
    return n


def settle(sniffer: LiveCapture, port: int, ended: float, ports: Collection[int] | None,
           timeout: float, *, quiet: float = 0.1, min_quiet: float = 0.02
           ) -> tuple[Decoded, list[Frame], str | None]:
    """Wait until a live capture's traffic has settled, then decode it.

    Settled: every query that started by ``ended`` has its ReadyForQuery
    (or its connection closed), and either every segment sent by then on the
    connections active by then is acknowledged, or no packet came for ``quiet`` seconds
    (an acknowledgment delayed or not captured). The capture thread may lag
    behind the wire, so the view counts as current only once a packet sent
    after ``ended`` has been read (packets are read in the order they were
    received, so every earlier one has been read too; usually the client's
    acknowledgment of the last answer), or after ``min_quiet`` seconds without
    a new packet. Connections stay open: no FIN is waited for.

    Args:
        sniffer: the running capture.
        port: the server port decoded.
        ended: when the captured code ended, seconds since the epoch.
        ports: client ports of the connections that count (None: all).
        timeout: the longest wait after ``ended``, in seconds.
        quiet, min_quiet: the quiet periods above, in seconds.

    Returns:
        (decoded, frames, notice): the decoded frames, the frames, and None or
        a one-line notice when the timeout ran out first.
    """
    acks = AckTracker(ended)
    count, changed = -1, ended
    decoded = Decoded()
    frames: list[Frame] = []
    while True:
        now = time.time()
        frames = sniffer.frames()
        if len(frames) != count:
            count, changed = len(frames), now
            decoded = decode_frames(frames, ports=(port,))
            acks.feed(frames)
        waiting = _open_queries(decoded, ended, ports)
        still = now - changed
        current = still >= min_quiet or (bool(frames) and frames[-1].ts > ended)
        if not waiting and (still >= quiet or (current and all(
                acks.settled(c) for c in decoded.connections
                if (ports is None or c.client[1] in ports) and c.first_ts <= ended))):
            return decoded, frames, None
        if now >= ended + timeout or sniffer.error is not None:
            why = (f"{waiting} query(ies) had no ReadyForQuery" if waiting
                   else "the traffic did not settle")
            return decoded, frames, f"waited {timeout:g} s after the block: {why}"
        time.sleep(0.005)
