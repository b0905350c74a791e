"""Replay a recorded PostgreSQL connection: a server that answers with the captured bytes.

A `ReplayServer` listens on a free loopback port and speaks the backend side
of the PostgreSQL protocol (PostgreSQL docs, "Frontend/Backend Protocol",
"Message Flow") from one recorded `Connection`: each query a client sends is
answered with the backend messages recorded for the matching query, byte for
byte (``message.raw``), so a driver and SQLAlchemy build their results and
ORM instances from exactly the recorded bytes, with no database at all.

- SSLRequest and GSSENCRequest are answered ``N``; StartupMessage with the
  recorded startup answers, every Authentication request replaced by a
  single AuthenticationOk (no password is asked for), ParameterStatus,
  BackendKeyData and ReadyForQuery as recorded.
- A query matches a recorded query of the same kind (simple Query, extended
  Parse/Bind/Execute ... Sync, FunctionCall) whose SQL text is the same up
  to whitespace; for the extended protocol the Bind parameters (and result
  formats) pick among several recorded executions of the same text. The
  k-th repeat of a text gets the k-th recorded answer. An execution answered
  with a recording of other Bind values is noted as a `ParameterMismatch`.
  Prepared statement and portal names are resolved to their SQL text on
  both sides and never compared (asyncpg counts them per process).
- Extended protocol: the answer of each request is sent when the client
  sends Flush or Sync, as a real server does (ParseComplete for Parse,
  ParameterDescription and RowDescription or NoData for Describe,
  BindComplete for Bind, DataRows and CommandComplete, PortalSuspended or
  EmptyQueryResponse for Execute, CloseComplete for Close, ReadyForQuery
  for Sync). After an ErrorResponse the requests up to Sync get nothing.
- A query the recording has no answer for gets an ErrorResponse (SQLSTATE
  08P01, `DIVERGENCE_MESSAGE`) and ReadyForQuery, and is recorded as a
  `Divergence` with what the recording had next.
- Terminate (and CancelRequest) close the connection.

The per-connection logic is sans-I/O (`ReplaySession.receive_data` takes the
client's bytes and returns the bytes to send); `ReplayServer` only moves
bytes between sockets and sessions.
"""

from __future__ import annotations

from ._recording import RecordedQuery, Recording, guess_driver, load_recording
from ._server import ReplayServer
from ._session import (
    DIVERGENCE_MESSAGE,
    DIVERGENCE_SQLSTATE,
    Divergence,
    ParameterMismatch,
    ReplaySession,
    error_response,
)

__all__ = [
    "DIVERGENCE_MESSAGE",
    "DIVERGENCE_SQLSTATE",
    "Divergence",
    "ParameterMismatch",
    "RecordedQuery",
    "Recording",
    "ReplayServer",
    "ReplaySession",
    "error_response",
    "guess_driver",
    "load_recording",
]
