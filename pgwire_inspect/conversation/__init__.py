"""Messages → connections and queries, paired with their responses.

A *connection* is one TCP connection. A *query* is one Query message, or
one extended-protocol group (Parse/Bind/Describe/Execute/Close/Flush) up to
its Sync, or one FunctionCall, together with the backend messages that
answer it up to ReadyForQuery (PostgreSQL docs, "Message Flow": "Simple
Query", "Extended Query", "Function Call"). Responses are paired with
requests first in, first out, so pipelined queries pair correctly, and
NoticeResponse, ParameterStatus and NotificationResponse, which may arrive
at any time, never break the pairing.

This module knows nothing of frames or TCP: the caller feeds each
connection's byte streams with the frame number and timestamp of every
chunk (see `pgwire_inspect.decode`).
"""

from ._builder import ConversationBuilder
from ._connection import Connection
from ._model import CopyExchange, QueryExchange, ResultSet, WireMessage

__all__ = [
    "Connection",
    "ConversationBuilder",
    "CopyExchange",
    "QueryExchange",
    "ResultSet",
    "WireMessage",
]
