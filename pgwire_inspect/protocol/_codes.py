"""Wire constants of the PostgreSQL frontend/backend protocol.

Source: PostgreSQL documentation, chapter "Frontend/Backend Protocol",
sections "Message Formats" and "Error and Notice Message Fields"; the codes
come from src/include/libpq/pqcomm.h and src/include/libpq/protocol.h.
"""

from __future__ import annotations

import enum

__all__ = [
    "AUTH_NAMES",
    "CANCEL_REQUEST_CODE",
    "ERROR_FIELD_NAMES",
    "GSSENC_REQUEST_CODE",
    "MAX_MESSAGE_LENGTH",
    "SSL_REQUEST_CODE",
    "TRANSACTION_STATUS",
    "Direction",
]

# from src/include/libpq/pqcomm.h
CANCEL_REQUEST_CODE = (1234 << 16) | 5678
SSL_REQUEST_CODE = (1234 << 16) | 5679
GSSENC_REQUEST_CODE = (1234 << 16) | 5680

#: The largest message length the parser believes: PostgreSQL allocates at
#: most MaxAllocSize (1 GiB - 1) for one message (src/include/utils/memutils.h).
MAX_MESSAGE_LENGTH = 0x3FFFFFFF

#: The largest startup packet the server accepts (MAX_STARTUP_PACKET_LENGTH,
#: src/include/libpq/pqcomm.h).
MAX_STARTUP_PACKET_LENGTH = 10000


class Direction(str, enum.Enum):
    """Which way a message travels: frontend (client) to backend (server) or back."""

    FRONTEND = "F"
    BACKEND = "B"


#: Authentication request codes of the 'R' message (Message Formats,
#: AuthenticationOk (B) ... AuthenticationSASLFinal (B)).
AUTH_NAMES: dict[int, str] = {
    0: "AuthenticationOk",
    2: "AuthenticationKerberosV5",
    3: "AuthenticationCleartextPassword",
    5: "AuthenticationMD5Password",
    7: "AuthenticationGSS",
    8: "AuthenticationGSSContinue",
    9: "AuthenticationSSPI",
    10: "AuthenticationSASL",
    11: "AuthenticationSASLContinue",
    12: "AuthenticationSASLFinal",
}

#: ReadyForQuery transaction status indicator, in words.
TRANSACTION_STATUS: dict[str, str] = {
    "I": "idle",
    "T": "in transaction",
    "E": "failed transaction",
}

#: Error and Notice Message Fields: the one-byte codes and the names we use
#: for them (snake_case of the documentation's names).
ERROR_FIELD_NAMES: dict[str, str] = {
    "S": "severity",
    "V": "severity_nonlocalized",
    "C": "code",
    "M": "message",
    "D": "detail",
    "H": "hint",
    "P": "position",
    "p": "internal_position",
    "q": "internal_query",
    "W": "where",
    "s": "schema_name",
    "t": "table_name",
    "c": "column_name",
    "d": "data_type_name",
    "n": "constraint_name",
    "F": "file",
    "L": "line",
    "R": "routine",
}
