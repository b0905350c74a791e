"""Frontend messages (F) and the startup-phase packets.

PostgreSQL documentation, "Frontend/Backend Protocol", "Message Formats".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._base import Message
from ._reader import Reader

# ---------------------------------------------------------------- startup phase (F)


@dataclass(frozen=True, slots=True, repr=False)
class StartupMessage(Message):
    """StartupMessage (F): protocol version and the connection's parameters."""

    protocol_version: str
    parameters: dict[str, str]
    name: ClassVar[str] = "StartupMessage"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        version = r.int32("protocol_version")
        params: dict[str, str] = {}
        while r.remaining() > 1:
            key = r.cstring("parameter_name")
            params[key] = r.cstring(f"parameters.{key}")
        r.raw(1, "terminator")
        return {"protocol_version": f"{version >> 16}.{version & 0xFFFF}", "parameters": params}


@dataclass(frozen=True, slots=True, repr=False)
class SSLRequest(Message):
    """SSLRequest (F): asks the backend to switch to TLS."""

    name: ClassVar[str] = "SSLRequest"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        r.int32("request_code")
        return {}


@dataclass(frozen=True, slots=True, repr=False)
class GSSENCRequest(Message):
    """GSSENCRequest (F): asks the backend to switch to GSSAPI encryption."""

    name: ClassVar[str] = "GSSENCRequest"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        r.int32("request_code")
        return {}


@dataclass(frozen=True, slots=True, repr=False)
class CancelRequest(Message):
    """CancelRequest (F): process ID and secret key (4 to 256 bytes in protocol 3.2)."""

    process_id: int
    secret_key: bytes
    name: ClassVar[str] = "CancelRequest"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        r.int32("request_code")
        return {"process_id": r.int32("process_id"), "secret_key": r.rest("secret_key")}


@dataclass(frozen=True, slots=True, repr=False)
class SSLResponse(Message):
    """The backend's one-byte answer to SSLRequest: 'S' (TLS follows) or 'N'."""

    answer: str
    name: ClassVar[str] = "SSLResponse"


@dataclass(frozen=True, slots=True, repr=False)
class GSSENCResponse(Message):
    """The backend's one-byte answer to GSSENCRequest: 'G' (GSSAPI follows) or 'N'."""

    answer: str
    name: ClassVar[str] = "GSSENCResponse"


# ---------------------------------------------------------------- frontend


@dataclass(frozen=True, slots=True, repr=False)
class Query(Message):
    """Query (F): a simple-protocol query string."""

    sql: str
    name: ClassVar[str] = "Query"
    type_code: ClassVar[bytes] = b"Q"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"sql": r.cstring("sql")}


@dataclass(frozen=True, slots=True, repr=False)
class Parse(Message):
    """Parse (F): prepared statement name, query string and parameter type OIDs."""

    statement: str
    query: str
    parameter_types: tuple[int, ...]
    name: ClassVar[str] = "Parse"
    type_code: ClassVar[bytes] = b"P"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        statement = r.cstring("statement")
        query = r.cstring("query")
        n = r.int16("parameter_count")
        types = tuple(r.uint32(f"parameter_types[{i}]") for i in range(max(n, 0)))
        return {"statement": statement, "query": query, "parameter_types": types}


@dataclass(frozen=True, slots=True, repr=False)
class Bind(Message):
    """Bind (F): portal, statement, parameter formats and values, result formats.

    ``parameters`` holds each parameter value's bytes, None for NULL.
    """

    portal: str
    statement: str
    parameter_formats: tuple[int, ...]
    parameters: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]
    name: ClassVar[str] = "Bind"
    type_code: ClassVar[bytes] = b"B"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        portal = r.cstring("portal")
        statement = r.cstring("statement")
        nf = r.int16("parameter_format_count")
        pformats = tuple(r.int16(f"parameter_formats[{i}]") for i in range(max(nf, 0)))
        n = r.int16("parameter_count")
        params: list[bytes | None] = []
        for i in range(max(n, 0)):
            size = r.int32(f"parameters[{i}].length")
            params.append(None if size == -1 else r.raw(size, f"parameters[{i}].value"))
        nr = r.int16("result_format_count")
        rformats = tuple(r.int16(f"result_formats[{i}]") for i in range(max(nr, 0)))
        return {"portal": portal, "statement": statement, "parameter_formats": pformats,
                "parameters": tuple(params), "result_formats": rformats}


@dataclass(frozen=True, slots=True, repr=False)
class Describe(Message):
    """Describe (F): 'S' a prepared statement or 'P' a portal, by name."""

    kind: str
    target: str
    name: ClassVar[str] = "Describe"
    type_code: ClassVar[bytes] = b"D"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"kind": r.byte1("kind"), "target": r.cstring("target")}


@dataclass(frozen=True, slots=True, repr=False)
class Execute(Message):
    """Execute (F): portal name and the maximum number of rows (0 = no limit)."""

    portal: str
    max_rows: int
    name: ClassVar[str] = "Execute"
    type_code: ClassVar[bytes] = b"E"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"portal": r.cstring("portal"), "max_rows": r.int32("max_rows")}


@dataclass(frozen=True, slots=True, repr=False)
class Close(Message):
    """Close (F): 'S' a prepared statement or 'P' a portal, by name."""

    kind: str
    target: str
    name: ClassVar[str] = "Close"
    type_code: ClassVar[bytes] = b"C"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"kind": r.byte1("kind"), "target": r.cstring("target")}


@dataclass(frozen=True, slots=True, repr=False)
class Sync(Message):
    """Sync (F): ends an extended-query group."""

    name: ClassVar[str] = "Sync"
    type_code: ClassVar[bytes] = b"S"


@dataclass(frozen=True, slots=True, repr=False)
class Flush(Message):
    """Flush (F): asks the backend to send what it has."""

    name: ClassVar[str] = "Flush"
    type_code: ClassVar[bytes] = b"H"


@dataclass(frozen=True, slots=True, repr=False)
class Terminate(Message):
    """Terminate (F): the frontend closes the connection."""

    name: ClassVar[str] = "Terminate"
    type_code: ClassVar[bytes] = b"X"


@dataclass(frozen=True, slots=True, repr=False)
class CopyData(Message):
    """CopyData (F and B): a chunk of COPY data."""

    data: bytes
    name: ClassVar[str] = "CopyData"
    type_code: ClassVar[bytes] = b"d"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"data": r.rest("data")}


@dataclass(frozen=True, slots=True, repr=False)
class CopyDone(Message):
    """CopyDone (F and B): the COPY data is complete."""

    name: ClassVar[str] = "CopyDone"
    type_code: ClassVar[bytes] = b"c"


@dataclass(frozen=True, slots=True, repr=False)
class CopyFail(Message):
    """CopyFail (F): the frontend aborts a COPY FROM STDIN, with a reason."""

    message: str
    name: ClassVar[str] = "CopyFail"
    type_code: ClassVar[bytes] = b"f"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"message": r.cstring("message")}


@dataclass(frozen=True, slots=True, repr=False)
class FunctionCall(Message):
    """FunctionCall (F): function OID, argument formats and values, result format."""

    function_oid: int
    argument_formats: tuple[int, ...]
    arguments: tuple[bytes | None, ...]
    result_format: int
    name: ClassVar[str] = "FunctionCall"
    type_code: ClassVar[bytes] = b"F"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        oid = r.uint32("function_oid")
        nf = r.int16("argument_format_count")
        formats = tuple(r.int16(f"argument_formats[{i}]") for i in range(max(nf, 0)))
        n = r.int16("argument_count")
        args: list[bytes | None] = []
        for i in range(max(n, 0)):
            size = r.int32(f"arguments[{i}].length")
            args.append(None if size == -1 else r.raw(size, f"arguments[{i}].value"))
        return {"function_oid": oid, "argument_formats": formats, "arguments": tuple(args),
                "result_format": r.int16("result_format")}


@dataclass(frozen=True, slots=True, repr=False)
class PasswordMessage(Message):
    """PasswordMessage (F): a cleartext password or an md5 hash."""

    password: str
    name: ClassVar[str] = "PasswordMessage"
    type_code: ClassVar[bytes] = b"p"
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"password": r.cstring("password")}


@dataclass(frozen=True, slots=True, repr=False)
class SASLInitialResponse(Message):
    """SASLInitialResponse (F): the chosen mechanism and the client-first-message."""

    mechanism: str
    data: bytes | None
    name: ClassVar[str] = "SASLInitialResponse"
    type_code: ClassVar[bytes] = b"p"
    secret_fields: ClassVar[tuple[str, ...]] = ("data",)

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        mechanism = r.cstring("mechanism")
        size = r.int32("data_length")
        return {"mechanism": mechanism, "data": None if size == -1 else r.raw(size, "data")}


@dataclass(frozen=True, slots=True, repr=False)
class SASLResponse(Message):
    """SASLResponse (F): mechanism-specific data (SCRAM client-final-message)."""

    data: bytes
    name: ClassVar[str] = "SASLResponse"
    type_code: ClassVar[bytes] = b"p"
    secret_fields: ClassVar[tuple[str, ...]] = ("data",)

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"data": r.rest("data")}


@dataclass(frozen=True, slots=True, repr=False)
class GSSResponse(Message):
    """GSSResponse (F): GSSAPI or SSPI data."""

    data: bytes
    name: ClassVar[str] = "GSSResponse"
    type_code: ClassVar[bytes] = b"p"

    @classmethod
    def read_body(cls, r: Reader) -> dict[str, Any]:
        return {"data": r.rest("data")}
