"""The conversation's data model: messages on the wire, queries, results, COPY."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..protocol import Column, CommandComplete, Message

__all__ = ["CopyExchange", "QueryExchange", "ResultSet", "WireMessage"]


class WireMessage(NamedTuple):
    """A protocol message and where it was on the wire (an immutable named tuple).

    Attributes:
        message: the decoded message (``message.offset`` is its stream offset).
        conn: 0-based number of its connection.
        frame: 1-based number of the frame that holds its first byte.
        last_frame: number of the frame that holds its last byte.
        ts: timestamp of ``last_frame`` (when the message was complete), seconds since the epoch.
    """

    message: Message
    conn: int
    frame: int
    last_frame: int
    ts: float

    @property
    def name(self) -> str:
        """The message's name, e.g. ``"DataRow"``."""
        return self.message.name

    @property
    def direction(self) -> str:
        """``"F"`` or ``"B"``."""
        return self.message.direction


@dataclass
class ResultSet:
    """One result of a query: its columns, its rows and its command tag.

    Attributes:
        description: the RowDescription that described the rows (None for a command
            without rows, or when an earlier Describe of the statement did).
        columns: the column descriptions.
        formats: the format code (0 text, 1 binary) each column's values arrive in.
        rows: the DataRow messages.
        complete: the CommandComplete (or EmptyQueryResponse, PortalSuspended), if seen.
    """

    description: WireMessage | None
    columns: tuple[Column, ...]
    formats: tuple[int, ...]
    rows: list[WireMessage] = field(default_factory=list)
    complete: WireMessage | None = None
    #: DataRows received (also when the rows themselves are not kept).
    row_count: int = 0
    #: With a row limit: the last DataRow, when it is not among `rows`.
    last_row: WireMessage | None = None
    #: The description came from a Describe of the statement, whose formats are
    #: all 0: the Bind of the portal decides them, and it may come later.
    formats_from_bind: bool = False
    #: A per-column plan that a view caches on the result (the JSON writer's).
    _json_plan: Any = field(default=None, repr=False)
    #: (decoder generation, (OID, format) per column, loader per column, row
    #: loader or None), made by `Connection.decode_row` on the first row.
    _decode_plan: Any = field(default=None, repr=False)

    @property
    def tag(self) -> str | None:
        """The CommandComplete tag ("SELECT 2"), or None."""
        if self.complete and isinstance(self.complete.message, CommandComplete):
            return self.complete.message.tag
        return None


@dataclass
class CopyExchange:
    """The COPY part of a query.

    Attributes:
        kind: "in" (COPY FROM STDIN), "out" (COPY TO STDOUT) or "both" (replication).
        response: the CopyInResponse, CopyOutResponse or CopyBothResponse.
        format: 0 textual (text or CSV), 1 binary.
        column_formats: the format of each column.
        data: the CopyData messages, in order, both directions.
        done: the CopyDone, if seen.
        failed: the CopyFail the frontend sent, if any.
    """

    kind: str
    response: WireMessage
    format: int
    column_formats: tuple[int, ...]
    data: list[WireMessage] = field(default_factory=list)
    done: WireMessage | None = None
    failed: WireMessage | None = None


@dataclass
class QueryExchange:
    """One query and everything the backend answered to it.

    Attributes:
        index: 0-based number of the query within its connection.
        conn: the connection's number.
        kind: "simple" (Query), "extended" (Parse/Bind/Execute ... Sync) or "function".
        sql: the query text (for the extended protocol, from the Parse or the
            prepared statement it executes), or None.
        statement: the prepared statement name ("" for the unnamed one), extended only.
        parameters: the Bind parameters as (type OID, format, bytes or None).
        requests: the frontend messages of the query.
        responses: the backend messages that answer it.
        results: one `ResultSet` per statement that ran.
        error: the ErrorResponse, if the query failed.
        status: the transaction status of the ReadyForQuery that ended it ('I', 'T', 'E').
        started: timestamp of the first request message, seconds since the epoch.
        ended: timestamp of the ReadyForQuery, or None if not seen.
    """

    index: int
    conn: int
    kind: str
    sql: str | None = None
    statement: str | None = None
    parameters: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    requests: list[WireMessage] = field(default_factory=list)
    responses: list[WireMessage] = field(default_factory=list)
    results: list[ResultSet] = field(default_factory=list)
    error: WireMessage | None = None
    status: str | None = None
    started: float = 0.0
    ended: float | None = None
    sent_sync: bool = False
    copy: CopyExchange | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from the first request to ReadyForQuery, or None."""
        return None if self.ended is None else self.ended - self.started

    @property
    def messages(self) -> list[WireMessage]:
        """Requests and responses in wire order."""
        return sorted(self.requests + self.responses, key=lambda w: (w.last_frame, w.frame))

    @property
    def row_count(self) -> int:
        """DataRows received, over all results."""
        return sum(r.row_count for r in self.results)


