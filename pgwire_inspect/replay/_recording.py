"""A recorded connection prepared for replay: each query's requests with their answers.

`Recording` walks a decoded `Connection`: it resolves prepared statement and
portal names to SQL text (as a server keeps them) and attributes each
backend message to the request it answers (PostgreSQL docs, "Message Flow",
"Extended Query": ParseComplete to Parse, ParameterDescription and
RowDescription or NoData to Describe, BindComplete to Bind, DataRows and
CommandComplete, PortalSuspended or EmptyQueryResponse to Execute,
CloseComplete to Close, ReadyForQuery to Sync; after an ErrorResponse
nothing until Sync).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..capture import Frame, looks_like_hexdump, open_capture, read_hexdump
from ..conversation import Connection, QueryExchange
from ..decode import Decoded, decode_frames
from ..errors import CaptureError
from ..protocol import (
    Authentication,
    Bind,
    Close,
    CopyBothResponse,
    CopyDone,
    CopyFail,
    CopyInResponse,
    Describe,
    ErrorResponse,
    Execute,
    Flush,
    GSSENCResponse,
    Message,
    NegotiateProtocolVersion,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    Parse,
    Query,
    SSLResponse,
    StartupMessage,
    Sync,
)

__all__ = ["RecordedQuery", "Recording", "guess_driver", "load_recording"]

_AUTH_OK = b"R\x00\x00\x00\x08\x00\x00\x00\x00"
_ASYNC = (NoticeResponse, ParameterStatus, NotificationResponse)
_COPY_START = (CopyInResponse, CopyBothResponse)
# Which backend messages answer each extended-protocol request: (allowed, terminal).
_ANSWERS: dict[type[Message], tuple[frozenset[str], frozenset[str]]] = {
    Parse: (frozenset(), frozenset({"ParseComplete"})),
    Bind: (frozenset(), frozenset({"BindComplete"})),
    Describe: (frozenset({"ParameterDescription"}), frozenset({"RowDescription", "NoData"})),
    Execute: (frozenset({"DataRow", "CopyInResponse", "CopyOutResponse", "CopyBothResponse",
                         "CopyData", "CopyDone"}),
              frozenset({"CommandComplete", "PortalSuspended", "EmptyQueryResponse"})),
    Close: (frozenset(), frozenset({"CloseComplete"})),
    Sync: (frozenset(), frozenset({"ReadyForQuery"})),
    Flush: (frozenset(), frozenset()),
}



def _norm(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split())


def _short(sql: str | None, limit: int = 70) -> str:
    text = _norm(sql) or "(no SQL)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Names:
    """Prepared statement and portal names → SQL text, as a server keeps them."""

    def __init__(self) -> None:
        self.statements: dict[str, str] = {}
        self.portals: dict[str, str | None] = {}

    def sql_of(self, msg: Message) -> str | None:
        """The SQL text ``msg`` is about (updating the names it defines or closes)."""
        if isinstance(msg, Query):
            return msg.sql
        if isinstance(msg, Parse):
            self.statements[msg.statement] = msg.query
            return msg.query
        if isinstance(msg, Bind):
            sql = self.statements.get(msg.statement)
            self.portals[msg.portal] = sql
            return sql
        if isinstance(msg, Execute):
            return self.portals.get(msg.portal)
        if isinstance(msg, Describe | Close):
            names: dict[str, str] | dict[str, str | None]
            names = self.statements if msg.kind == "S" else self.portals
            sql = names.get(msg.target)
            if isinstance(msg, Close):
                names.pop(msg.target, None)
            return sql
        return None


@dataclass
class _Step:
    """One request of a recorded query and the backend messages that answer it.

    ``responses`` go out when the request is answered; ``after_copy`` (the
    rest of a COPY FROM STDIN's answer) when the client ends its CopyData.
    """

    request: Message
    responses: list[Message] = field(default_factory=list)
    after_copy: list[Message] = field(default_factory=list)


@dataclass
class RecordedQuery:
    """One recorded query, ready to be replayed.

    Attributes:
        index: its 0-based number in the recorded connection.
        kind: "simple", "extended" or "function".
        sql: its SQL text, statement and portal names resolved (None if unknown).
        parameters: the values of its first Bind (None for other kinds).
        result_formats: the result format codes of its first Bind (None for other kinds).
        steps: each request with the backend messages that answer it.
        exchange: the recorded `QueryExchange`.
    """

    index: int
    kind: str
    sql: str | None
    parameters: tuple[bytes | None, ...] | None
    result_formats: tuple[int, ...] | None
    steps: list[_Step]
    exchange: QueryExchange

    @property
    def key(self) -> tuple[str, str | None]:
        """What a client query must have to match: (kind, whitespace-normalized SQL)."""
        return self.kind, _norm(self.sql)

    def describe(self) -> str:
        """One line: ``query 12 (simple): ROLLBACK``."""
        return f"query {self.index} ({self.kind}): {_short(self.sql)}"


def _split_steps(q: QueryExchange, names: _Names) -> tuple[list[_Step], str | None,
                                                            Bind | None]:
    """Attribute the responses of a recorded query to its requests (see `_ANSWERS`).

    Returns:
        The steps, the query's SQL text and its first Bind.
    """
    steps = [_Step(w.message) for w in q.requests]
    sql: str | None = None
    bind: Bind | None = None
    for step in steps:
        found = names.sql_of(step.request)
        if sql is None and found is not None:
            sql = found
        if bind is None and isinstance(step.request, Bind):
            bind = step.request
    responses = [w.message for w in q.responses]
    if not steps:
        return steps, sql, bind
    if q.kind != "extended":
        first = steps[0]
        cut = next((i for i, m in enumerate(responses) if isinstance(m, _COPY_START)), None)
        if cut is None:
            first.responses = responses
        else:
            first.responses = responses[: cut + 1]
            end = next((s for s in steps[1:] if isinstance(s.request, CopyDone | CopyFail)),
                       steps[-1])
            end.after_copy = responses[cut + 1:]
        return steps, sql, bind
    pos = 0
    failed = False
    for step in steps:
        if failed and not isinstance(step.request, Sync):
            continue
        allowed, terminal = _ANSWERS.get(type(step.request), (frozenset(), frozenset()))
        while pos < len(responses):
            m = responses[pos]
            if isinstance(m, ErrorResponse):
                step.responses.append(m)
                pos += 1
                failed = True
                break
            if not (isinstance(m, _ASYNC) or m.name in allowed or m.name in terminal):
                break
            step.responses.append(m)
            pos += 1
            if m.name in terminal:
                break
        if isinstance(step.request, Sync):
            failed = False
    steps[-1].responses.extend(responses[pos:])  # anything left: with the last request
    for step in steps:
        cut = next((i for i, m in enumerate(step.responses) if isinstance(m, _COPY_START)), None)
        if cut is not None:
            step.responses, step.after_copy = step.responses[: cut + 1], step.responses[cut + 1:]
    return steps, sql, bind


class Recording:
    """One recorded connection prepared for replay.

    Args:
        connection: a decoded connection with its messages kept (the default
            of `decode_frames`), captured from its start.

    Raises:
        CaptureError: the connection was captured without its StartupMessage,
            or its traffic is encrypted.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        if connection.state.encrypted_by:
            raise CaptureError(f"connection {connection.id} is encrypted "
                              f"({connection.state.encrypted_by}): nothing to replay")
        startup = next((w.message for w in connection.startup
                        if isinstance(w.message, StartupMessage)), None)
        if startup is None:
            raise CaptureError(f"connection {connection.id} was captured without its startup "
                              "(no StartupMessage): there is no login to replay")
        #: The recorded StartupMessage.
        self.startup_message: StartupMessage = startup
        self._startup: list[Message] = [
            w.message for w in connection.startup
            if w.direction == "B" and not isinstance(w.message, SSLResponse | GSSENCResponse)]
        names = _Names()
        #: The recorded queries, in order (``queries[i].index == i``).
        self.queries: list[RecordedQuery] = []
        #: The recorded queries by `RecordedQuery.key`, in order.
        self.by_key: dict[tuple[str, str | None], list[RecordedQuery]] = {}
        for i, q in enumerate(connection.queries):
            steps, sql, bind = _split_steps(q, names)
            bind = bind if q.kind == "extended" else None
            unit = RecordedQuery(i, q.kind, sql, None if bind is None else bind.parameters,
                                 None if bind is None else bind.result_formats, steps, q)
            self.queries.append(unit)
            self.by_key.setdefault(unit.key, []).append(unit)

    @property
    def user(self) -> str:
        """The user name of the recorded StartupMessage ("postgres" if none)."""
        return self.startup_message.parameters.get("user") or "postgres"

    @property
    def database(self) -> str:
        """The database of the recorded StartupMessage (the user name if none)."""
        return self.startup_message.parameters.get("database") or self.user

    @property
    def server_version(self) -> str | None:
        """The ``server_version`` ParameterStatus of the recording, if any."""
        return next((m.value for m in self._startup
                     if isinstance(m, ParameterStatus) and m.parameter == "server_version"), None)

    def startup_answer(self, client: StartupMessage) -> bytes:
        """The backend's answer to ``client``'s StartupMessage.

        The recorded startup messages with every Authentication request
        replaced by one AuthenticationOk (in the first one's place); a
        recorded NegotiateProtocolVersion only if the client asked for a
        newer minor version or for protocol options (``_pq_.``).

        Returns:
            The bytes to send (PostgreSQL docs, "Message Flow", "Start-up").
        """
        negotiates = client.protocol_version != "3.0" or any(
            k.startswith("_pq_.") for k in client.parameters)
        out = b""
        auth_done = False
        for m in self._startup:
            if isinstance(m, Authentication):
                if not auth_done:
                    out += _AUTH_OK
                    auth_done = True
                continue
            if isinstance(m, NegotiateProtocolVersion) and not negotiates:
                continue
            if not auth_done and not isinstance(m, NegotiateProtocolVersion):
                out += _AUTH_OK
                auth_done = True
            out += m.raw
        return out if auth_done else out + _AUTH_OK


# ------------------------------------------------------------------ recordings


def _frames(path: str | os.PathLike[str]) -> Iterable[Frame]:

    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror or exc}") from None
    if looks_like_hexdump(head):
        return read_hexdump(Path(path).read_text("utf-8", "replace"))
    return open_capture(path)


def load_recording(path: str | os.PathLike[str], conn: int | None = None
                   ) -> tuple[Decoded, Connection]:
    """Decode a capture and pick the connection to replay.

    Args:
        path: a pcap, pcapng or hex dump file.
        conn: the connection number as `read` shows it (0-based); None picks
            the connection with the most queries (the first of equals).

    Returns:
        The decoded capture (PostgreSQL found on any port) and the connection.

    Raises:
        CaptureError: the file cannot be read, holds no PostgreSQL connection,
            or has no connection ``conn``.
    """
    decoded = decode_frames(_frames(path), ports=None)
    if not decoded.connections:
        raise CaptureError(f"{path}: no PostgreSQL connection in the capture")
    if conn is None:
        return decoded, max(decoded.connections, key=lambda c: (len(c.queries), -c.id))
    found = decoded.connection(conn)
    if found is None:
        raise CaptureError(f"{path} has no connection {conn} "
                           f"(it has 0 to {len(decoded.connections) - 1})")
    return decoded, found


def guess_driver(connection: Connection) -> str:
    """The driver that most likely made a recorded connection.

    Returns:
        "psycopg2" when every query is a simple Query, "asyncpg" when an
        extended-protocol query asks for binary results (Bind result format
        1), "psycopg" for extended queries with text results.
    """
    extended = [q for q in connection.queries if q.kind == "extended"]
    if not extended:
        return "psycopg2"
    binary = any(isinstance(w.message, Bind) and 1 in w.message.result_formats
                 for q in extended for w in q.requests)
    return "asyncpg" if binary else "psycopg"
