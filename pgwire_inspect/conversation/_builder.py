"""Connections made and fed by number, for the decoding pipeline."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ._connection import Connection
from ._model import QueryExchange, ResultSet, WireMessage

__all__ = ["ConversationBuilder"]


class ConversationBuilder:
    """Builds `Connection` objects from per-connection byte streams.

    Args:
        keep_messages: keep every message on its connection (needed by the
            table views; a streaming consumer passes False and uses ``emit``).
        keep_rows, keep_queries, on_row, on_rows, on_query, row_limit, query_limit: see
            `Connection`; a consumer of huge captures keeps neither rows nor
            queries and counts them in the callbacks, so memory stays bounded.
        emit: called with each decoded message and its connection, in decoding order.
    """

    def __init__(self, *, keep_messages: bool = True,
                 emit: Callable[[WireMessage, Connection], None] | None = None,
                 keep_rows: bool = True, keep_queries: bool = True,
                 on_row: Callable[[Connection, ResultSet, WireMessage], None] | None = None,
                 on_query: Callable[[Connection, QueryExchange], None] | None = None,
                 row_limit: int | None = None, query_limit: int | None = None,
                 on_rows: Callable[[Connection, ResultSet, list[WireMessage]], None] | None = None
                 ) -> None:
        self.connections: list[Connection] = []
        self._by_id: dict[int, Connection] = {}
        self.keep_messages = keep_messages
        self.emit = emit
        self.options = {"keep_rows": keep_rows, "keep_queries": keep_queries,
                        "on_row": on_row, "on_query": on_query, "row_limit": row_limit,
                        "query_limit": query_limit, "on_rows": on_rows}

    def open(self, conn: int, client: tuple[str, int], server: tuple[str, int], frame: int,
             ts: float, handshake: bool) -> Connection:
        """Start a connection (numbered by the caller, 0-based)."""
        c = Connection(conn, client, server, frame, ts, handshake,
                       keep_messages=self.keep_messages, **self.options)  # type: ignore[arg-type]
        c.emit = self.emit
        self.connections.append(c)
        self._by_id[conn] = c
        return c

    def get(self, conn: int) -> Connection:
        """The connection opened as ``conn``."""
        return self._by_id[conn]

    def data(self, conn: int, direction: str, offset: int, data: bytes, frame: int,
             ts: float) -> None:
        """Feed contiguous stream bytes (see `Connection.feed`)."""
        c = self._by_id[conn]
        c.feed(direction, offset, data, frame, ts, c.emit)

    def gap(self, conn: int, direction: str, offset: int, length: int,
            frame_before: int | None, frame_after: int | None) -> None:
        """Record missing stream bytes (see `Connection.gap`)."""
        self._by_id[conn].gap(direction, offset, length, frame_before, frame_after)

    def end(self, conn: int, direction: str, reason: str, frame: int | None,
            ts: float | None) -> None:
        """End one direction of a connection (see `Connection.end`)."""
        c = self._by_id[conn]
        c.end(direction, reason, frame, ts, c.emit)

    def messages(self) -> Iterator[WireMessage]:
        """Every kept message of every connection, connection by connection."""
        for c in self.connections:
            yield from c.messages
