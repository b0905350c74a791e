"""Sans-I/O parser of the PostgreSQL frontend/backend protocol (3.0 and 3.2).

Feed a direction's bytes to a `StreamParser` (or both directions to a
`ConnectionParser`) and pull messages with ``next_message()`` until it
returns `NEED_DATA`. Every message is a frozen dataclass named as in the
PostgreSQL documentation, "Frontend/Backend Protocol", "Message Formats",
that keeps its raw bytes, its stream offset and, through ``spans()``, the
byte span of each field. This package imports only the standard library.

Runs of DataRow messages are split by an optional C speed-up (_speedups.c,
built at install time when a compiler is there); `SPEEDUPS` tells whether it
is in use, and `PURE_PYTHON_ENV` set at import time turns it off. Both give
the same messages.
"""

from ._backend import (
    AUTH_CLASSES,
    Authentication,
    AuthenticationCleartextPassword,
    AuthenticationGSS,
    AuthenticationGSSContinue,
    AuthenticationKerberosV5,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    AuthenticationSSPI,
    BackendKeyData,
    BindComplete,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    EmptyQueryResponse,
    ErrorResponse,
    FunctionCallResponse,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
)
from ._base import Column, MalformedMessage, Message
from ._codes import AUTH_NAMES, ERROR_FIELD_NAMES, TRANSACTION_STATUS, Direction
from ._framing import (
    BACKEND_TYPES,
    FRONTEND_TYPES,
    NEED_DATA,
    PURE_PYTHON_ENV,
    SPEEDUPS,
    ConnectionParser,
    NeedData,
    SessionState,
    StreamParser,
    decode_message,
    field_spans,
)
from ._frontend import (
    Bind,
    CancelRequest,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FunctionCall,
    GSSENCRequest,
    GSSENCResponse,
    GSSResponse,
    Parse,
    PasswordMessage,
    Query,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    Sync,
    Terminate,
)
from ._reader import Span

__all__ = [
    "AUTH_CLASSES", "AUTH_NAMES", "BACKEND_TYPES", "ERROR_FIELD_NAMES", "FRONTEND_TYPES",
    "NEED_DATA", "PURE_PYTHON_ENV", "SPEEDUPS", "TRANSACTION_STATUS",
    "Authentication", "AuthenticationCleartextPassword", "AuthenticationGSS",
    "AuthenticationGSSContinue", "AuthenticationKerberosV5", "AuthenticationMD5Password",
    "AuthenticationOk", "AuthenticationSASL", "AuthenticationSASLContinue",
    "AuthenticationSASLFinal", "AuthenticationSSPI", "BackendKeyData", "Bind", "BindComplete",
    "CancelRequest", "Close", "CloseComplete", "Column", "CommandComplete", "ConnectionParser",
    "CopyBothResponse", "CopyData", "CopyDone", "CopyFail", "CopyInResponse",
    "CopyOutResponse", "DataRow", "Describe", "Direction", "EmptyQueryResponse",
    "ErrorResponse", "Execute", "Flush", "FunctionCall", "FunctionCallResponse",
    "GSSENCRequest", "GSSENCResponse", "GSSResponse", "MalformedMessage", "Message",
    "NeedData", "NegotiateProtocolVersion", "NoData", "NoticeResponse",
    "NotificationResponse", "ParameterDescription", "ParameterStatus", "Parse",
    "ParseComplete", "PasswordMessage", "PortalSuspended", "Query", "ReadyForQuery",
    "RowDescription", "SASLInitialResponse", "SASLResponse", "SSLRequest", "SSLResponse",
    "SessionState", "Span", "StartupMessage", "StreamParser", "Sync", "Terminate",
    "decode_message", "field_spans",
]
