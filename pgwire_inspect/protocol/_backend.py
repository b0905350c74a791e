"""Backend messages (B).

PostgreSQL documentation, "Frontend/Backend Protocol", "Message Formats".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._base import Column, Message
from ._codes import ERROR_FIELD_NAMES, TRANSACTION_STATUS
from ._reader import Reader

# ---------------------------------------------------------------- backend


@dataclass(frozen=True, slots=True, repr=False)
class Authentication(Message):
    """Base of the Authentication* messages ('R', B): ``code`` names which one."""

    code: int
    type_code: ClassVar[bytes] = b"R"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"code": r.int32("code")}


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationOk(Authentication):
    """AuthenticationOk (B): authentication succeeded."""

    name: ClassVar[str] = "AuthenticationOk"


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationKerberosV5(Authentication):
    """AuthenticationKerberosV5 (B): Kerberos V5 required (unsupported since PostgreSQL 9.4)."""

    name: ClassVar[str] = "AuthenticationKerberosV5"


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationCleartextPassword(Authentication):
    """AuthenticationCleartextPassword (B): send the password in clear text."""

    name: ClassVar[str] = "AuthenticationCleartextPassword"


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationGSS(Authentication):
    """AuthenticationGSS (B): start GSSAPI authentication."""

    name: ClassVar[str] = "AuthenticationGSS"


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationSSPI(Authentication):
    """AuthenticationSSPI (B): start SSPI authentication."""

    name: ClassVar[str] = "AuthenticationSSPI"


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationMD5Password(Authentication):
    """AuthenticationMD5Password (B): the 4-byte salt."""

    salt: bytes
    name: ClassVar[str] = "AuthenticationMD5Password"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"code": r.int32("code"), "salt": r.raw(4, "salt")}


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationSASL(Authentication):
    """AuthenticationSASL (B): the SASL mechanisms the backend offers."""

    mechanisms: tuple[str, ...]
    name: ClassVar[str] = "AuthenticationSASL"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        code = r.int32("code")
        mechs: list[str] = []
        while r.remaining() > 1:
            mechs.append(r.cstring(f"mechanisms[{len(mechs)}]"))
        r.raw(1, "terminator")
        return {"code": code, "mechanisms": tuple(mechs)}


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationGSSContinue(Authentication):
    """AuthenticationGSSContinue (B): GSSAPI or SSPI data."""

    data: bytes
    name: ClassVar[str] = "AuthenticationGSSContinue"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"code": r.int32("code"), "data": r.rest("data")}


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationSASLContinue(Authentication):
    """AuthenticationSASLContinue (B): SCRAM server-first-message."""

    data: bytes
    name: ClassVar[str] = "AuthenticationSASLContinue"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"code": r.int32("code"), "data": r.rest("data")}


@dataclass(frozen=True, slots=True, repr=False)
class AuthenticationSASLFinal(Authentication):
    """AuthenticationSASLFinal (B): SCRAM server-final-message."""

    data: bytes
    name: ClassVar[str] = "AuthenticationSASLFinal"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"code": r.int32("code"), "data": r.rest("data")}


AUTH_CLASSES: dict[int, type[Authentication]] = {
    0: AuthenticationOk, 2: AuthenticationKerberosV5, 3: AuthenticationCleartextPassword,
    5: AuthenticationMD5Password, 7: AuthenticationGSS, 8: AuthenticationGSSContinue,
    9: AuthenticationSSPI, 10: AuthenticationSASL, 11: AuthenticationSASLContinue,
    12: AuthenticationSASLFinal,
}


@dataclass(frozen=True, slots=True, repr=False)
class ParameterStatus(Message):
    """ParameterStatus (B): a run-time parameter's name and current value."""

    parameter: str
    value: str
    name: ClassVar[str] = "ParameterStatus"
    type_code: ClassVar[bytes] = b"S"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"parameter": r.cstring("parameter"), "value": r.cstring("value")}


@dataclass(frozen=True, slots=True, repr=False)
class BackendKeyData(Message):
    """BackendKeyData (B): process ID and secret key (4 bytes; 4 to 256 in protocol 3.2)."""

    process_id: int
    secret_key: bytes
    name: ClassVar[str] = "BackendKeyData"
    type_code: ClassVar[bytes] = b"K"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"process_id": r.int32("process_id"), "secret_key": r.rest("secret_key")}


@dataclass(frozen=True, slots=True, repr=False)
class ReadyForQuery(Message):
    """ReadyForQuery (B): transaction status 'I' idle, 'T' in transaction, 'E' failed."""

    status: str
    name: ClassVar[str] = "ReadyForQuery"
    type_code: ClassVar[bytes] = b"Z"

    @property
    def status_text(self) -> str:
        """The status in words: "idle", "in transaction" or "failed transaction"."""
        return TRANSACTION_STATUS.get(self.status, f"unknown status {self.status!r}")

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"status": r.byte1("status")}


@dataclass(frozen=True, slots=True, repr=False)
class RowDescription(Message):
    """RowDescription (B): the description of each column of the rows that follow."""

    columns: tuple[Column, ...]
    name: ClassVar[str] = "RowDescription"
    type_code: ClassVar[bytes] = b"T"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        n = r.int16("column_count")
        if n < 0 or n * 19 > r.remaining():
            r.raw(r.remaining() + 1, f"{n} column descriptions")
        cols = []
        for i in range(n):
            p = f"columns[{i}]."
            cols.append(Column(r.cstring(p + "name"), r.uint32(p + "table_oid"),
                               r.int16(p + "column"), r.uint32(p + "type_oid"),
                               r.int16(p + "typlen"), r.int32(p + "typmod"),
                               r.int16(p + "format")))
        return {"columns": tuple(cols)}


@dataclass(frozen=True, slots=True, repr=False)
class DataRow(Message):
    """DataRow (B): each column value's bytes, None for NULL."""

    values: tuple[bytes | None, ...]
    name: ClassVar[str] = "DataRow"
    type_code: ClassVar[bytes] = b"D"

    def fields(self) -> dict[str, Any]:
        """``raw``: each column's bytes as hex, None for NULL."""
        return {"raw": [None if v is None else v.hex() for v in self.values]}

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        n = r.int16("column_count")
        if n < 0 or n * 4 > r.remaining():
            r.raw(r.remaining() + 1, f"{n} column values")
        values: list[bytes | None] = []
        for i in range(n):
            size = r.int32(f"values[{i}].length")
            if size < -1:
                r.raw(size, f"values[{i}].value")
            values.append(None if size == -1 else r.raw(size, f"values[{i}].value"))
        return {"values": tuple(values)}


@dataclass(frozen=True, slots=True, repr=False)
class CommandComplete(Message):
    """CommandComplete (B): the command tag, e.g. "SELECT 2"."""

    tag: str
    name: ClassVar[str] = "CommandComplete"
    type_code: ClassVar[bytes] = b"C"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"tag": r.cstring("tag")}


def _notice_fields(r: Reader) -> dict[str, Any]:
    out: dict[str, str] = {}
    while r.remaining() > 1:
        code = chr(r.data[r.pos])
        key = ERROR_FIELD_NAMES.get(code, f"field_{code}")
        r.byte1(f"{key}.code")
        out[key] = r.cstring(key)
    r.raw(1, "terminator")
    return {"notice_fields": out}


@dataclass(frozen=True, slots=True, repr=False)
class ErrorResponse(Message):
    """ErrorResponse (B): severity, SQLSTATE code, message, detail, hint, position, ..."""

    notice_fields: dict[str, str]
    name: ClassVar[str] = "ErrorResponse"
    type_code: ClassVar[bytes] = b"E"

    def fields(self) -> dict[str, Any]:
        """The error's fields keyed by name (``severity``, ``code``, ``message``, ...)."""
        return dict(self.notice_fields)

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return _notice_fields(r)


@dataclass(frozen=True, slots=True, repr=False)
class NoticeResponse(Message):
    """NoticeResponse (B): a notice with the same fields as ErrorResponse."""

    notice_fields: dict[str, str]
    name: ClassVar[str] = "NoticeResponse"
    type_code: ClassVar[bytes] = b"N"

    def fields(self) -> dict[str, Any]:
        """The notice's fields keyed by name (``severity``, ``code``, ``message``, ...)."""
        return dict(self.notice_fields)

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return _notice_fields(r)


@dataclass(frozen=True, slots=True, repr=False)
class EmptyQueryResponse(Message):
    """EmptyQueryResponse (B): the query string was empty."""

    name: ClassVar[str] = "EmptyQueryResponse"
    type_code: ClassVar[bytes] = b"I"


@dataclass(frozen=True, slots=True, repr=False)
class ParseComplete(Message):
    """ParseComplete (B): Parse succeeded."""

    name: ClassVar[str] = "ParseComplete"
    type_code: ClassVar[bytes] = b"1"


@dataclass(frozen=True, slots=True, repr=False)
class BindComplete(Message):
    """BindComplete (B): Bind succeeded."""

    name: ClassVar[str] = "BindComplete"
    type_code: ClassVar[bytes] = b"2"


@dataclass(frozen=True, slots=True, repr=False)
class CloseComplete(Message):
    """CloseComplete (B): Close succeeded."""

    name: ClassVar[str] = "CloseComplete"
    type_code: ClassVar[bytes] = b"3"


@dataclass(frozen=True, slots=True, repr=False)
class NoData(Message):
    """NoData (B): the statement returns no rows."""

    name: ClassVar[str] = "NoData"
    type_code: ClassVar[bytes] = b"n"


@dataclass(frozen=True, slots=True, repr=False)
class PortalSuspended(Message):
    """PortalSuspended (B): Execute's row limit was reached."""

    name: ClassVar[str] = "PortalSuspended"
    type_code: ClassVar[bytes] = b"s"


@dataclass(frozen=True, slots=True, repr=False)
class ParameterDescription(Message):
    """ParameterDescription (B): the type OID of each parameter of a statement."""

    parameter_types: tuple[int, ...]
    name: ClassVar[str] = "ParameterDescription"
    type_code: ClassVar[bytes] = b"t"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        n = r.int16("parameter_count")
        if n < 0 or n * 4 > r.remaining():
            r.raw(r.remaining() + 1, f"{n} parameter types")
        return {"parameter_types": tuple(r.uint32(f"parameter_types[{i}]") for i in range(n))}


def _copy_response(r: Reader) -> dict[str, Any]:
    fmt = r.int8("format")
    n = r.int16("column_count")
    if n < 0 or n * 2 > r.remaining():
        r.raw(r.remaining() + 1, f"{n} column formats")
    return {"format": fmt,
            "column_formats": tuple(r.int16(f"column_formats[{i}]") for i in range(n))}


@dataclass(frozen=True, slots=True, repr=False)
class CopyInResponse(Message):
    """CopyInResponse (B): COPY FROM STDIN starts; overall and per-column formats."""

    format: int
    column_formats: tuple[int, ...]
    name: ClassVar[str] = "CopyInResponse"
    type_code: ClassVar[bytes] = b"G"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return _copy_response(r)


@dataclass(frozen=True, slots=True, repr=False)
class CopyOutResponse(Message):
    """CopyOutResponse (B): COPY TO STDOUT starts; overall and per-column formats."""

    format: int
    column_formats: tuple[int, ...]
    name: ClassVar[str] = "CopyOutResponse"
    type_code: ClassVar[bytes] = b"H"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return _copy_response(r)


@dataclass(frozen=True, slots=True, repr=False)
class CopyBothResponse(Message):
    """CopyBothResponse (B): copy in both directions (streaming replication)."""

    format: int
    column_formats: tuple[int, ...]
    name: ClassVar[str] = "CopyBothResponse"
    type_code: ClassVar[bytes] = b"W"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return _copy_response(r)


@dataclass(frozen=True, slots=True, repr=False)
class NotificationResponse(Message):
    """NotificationResponse (B): a NOTIFY's sender process ID, channel and payload."""

    process_id: int
    channel: str
    payload: str
    name: ClassVar[str] = "NotificationResponse"
    type_code: ClassVar[bytes] = b"A"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"process_id": r.int32("process_id"), "channel": r.cstring("channel"),
                "payload": r.cstring("payload")}


@dataclass(frozen=True, slots=True, repr=False)
class FunctionCallResponse(Message):
    """FunctionCallResponse (B): the function's result bytes, None for NULL."""

    result: bytes | None
    name: ClassVar[str] = "FunctionCallResponse"
    type_code: ClassVar[bytes] = b"V"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        size = r.int32("result_length")
        return {"result": None if size == -1 else r.raw(size, "result")}


@dataclass(frozen=True, slots=True, repr=False)
class NegotiateProtocolVersion(Message):
    """NegotiateProtocolVersion (B): newest minor version supported, unknown options."""

    newest_minor_version: int
    unrecognized_options: tuple[str, ...]
    name: ClassVar[str] = "NegotiateProtocolVersion"
    type_code: ClassVar[bytes] = b"v"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        minor = r.int32("newest_minor_version")
        n = r.int32("option_count")
        if n < 0 or n > r.remaining():
            r.raw(r.remaining() + 1, f"{n} options")
        return {"newest_minor_version": minor,
                "unrecognized_options": tuple(r.cstring(f"options[{i}]") for i in range(n))}
