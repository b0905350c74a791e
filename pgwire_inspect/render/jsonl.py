"""JSON lines: one object per protocol message, then one per ORM instance.

The keys are a stable interface for scripts (see README.md, "JSON lines").
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import IO, Any, cast

from ..conversation import Connection, ResultSet, WireMessage
from ..copydata import replication_message
from ..protocol import (
    BindComplete,
    Close,
    CloseComplete,
    CommandComplete,
    CopyData,
    DataRow,
    Describe,
    EmptyQueryResponse,
    Execute,
    Flush,
    NoData,
    ParameterDescription,
    Parse,
    ParseComplete,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
    Sync,
)
from ..protocol._accel import speedup
from ..redact import MASK
from ..types import type_name, value_to_json, value_to_text
from ._policy import current

__all__ = ["JsonLinesWriter", "message_object"]


TEXT_OID = 25
#: render/_speedups.c's JSON line of an all-text DataRow, or None (pure Python).
_c_json_data_row = speedup(__name__.rpartition(".")[0] + "._speedups", "json_data_row")
#: Messages whose fields depend on their bytes alone (no secrets, no session
#: state) and that recur byte for byte: their "fields" JSON is cached.
_REPEATED = frozenset({
    RowDescription, ReadyForQuery, CommandComplete, ParseComplete, BindComplete,
    CloseComplete, NoData, EmptyQueryResponse, PortalSuspended, ParameterDescription,
    Parse, Describe, Execute, Close, Sync, Flush,
})
_FIELDS_CACHED = 4096


def _text_value(conn: Connection, oid: int, fmt: int, raw: bytes | None) -> str | None:
    """A column value as text: the wire text for text format, the decoded value's text else."""
    if raw is None:
        return None
    try:
        if fmt == 0:
            return str(conn.decoder.decode(TEXT_OID, 0, raw))
        return value_to_text(conn.decoder.decode(oid, fmt, raw))
    except Exception:
        return raw.decode("utf-8", "backslashreplace") if fmt == 0 else "\\x" + raw.hex()


def _row_plan(result: Any) -> tuple[list[tuple[int, int, bool]], bool]:
    """Per column of a result: (type OID, format, masked?), computed once per result;
    and whether every column is text format and shown (values are then the wire text)."""
    cached = getattr(result, "_json_plan", None)
    if cached is None:
        policy = current()
        plan = [(c.type_oid, result.formats[i] if i < len(result.formats) else 0,
                 policy.hides_column(c.name)) for i, c in enumerate(result.columns)]
        cached = (plan, all(fmt == 0 and not masked for _, fmt, masked in plan))
        result._json_plan = cached
    return cached


def _data_row_fields(conn: Connection, plan: list[tuple[int, int, bool]],
                     row: tuple[bytes | None, ...]) -> dict[str, Any]:
    """A DataRow's "fields": each value as text and as hex (masked where the plan says)."""
    values: list[str | None] = []
    raws: list[str | None] = []
    for i, raw in enumerate(row):
        if raw is None:
            values.append(None)
            raws.append(None)
            continue
        oid, fmt, masked = plan[i] if i < len(plan) else (0, 0, False)
        if masked:
            values.append(MASK)
            raws.append(MASK)
            continue
        values.append(_text_value(conn, oid, fmt, raw))
        raws.append(raw.hex())
    return {"values": values, "raw": raws}


def message_object(wm: WireMessage, conn: Connection) -> dict[str, Any]:
    """The JSON object of one message.

    Args:
        wm: the message and where it was.
        conn: its connection (for endpoints, column types and the value decoder).

    Returns:
        A dict with keys conn, client, server, dir, type, frame, offset, length, fields.
    """
    msg = wm.message
    fields: dict[str, Any]
    if type(msg) is DataRow:
        result = conn.result_of(wm)
        fields = _data_row_fields(conn, _row_plan(result)[0] if result is not None else [],
                                  msg.values)
    elif isinstance(msg, RowDescription):
        fields = {"columns": [
            {"name": c.name, "table_oid": c.table_oid, "column": c.column,
             "type_oid": c.type_oid, "type": type_name(c.type_oid, c.typmod),
             "typlen": c.typlen, "typmod": c.typmod, "format": c.format}
            for c in msg.columns]}
    else:
        fields = current().message_fields(msg)
        if isinstance(msg, CopyData) and conn.state.startup_parameters.get("replication"):
            fields["replication_message"] = replication_message(msg.data)
    return {"conn": wm.conn, "client": conn.client_text, "server": conn.server_text,
            "dir": msg.direction, "type": msg.name, "frame": wm.frame, "offset": msg.offset,
            "length": msg.length, "fields": fields}


class JsonLinesWriter:
    """Writes JSON lines to a text stream.

    Args:
        out: the stream (stdout).
        batch: lines written to ``out`` together (1: each line at once, for
            consumers that follow the output live). With more, call `flush`
            at the end, also after an error, so that no line is lost.
    """

    def __init__(self, out: IO[str], batch: int = 1) -> None:
        self.out = out
        self.count = 0
        self._batch = max(batch, 1)
        self._pending: list[str] = []
        # connection number -> the start of its DataRow lines, up to "frame":
        self._row_prefixes: dict[int, str] = {}
        # (connection number, direction, message name) -> the same, for other messages
        self._prefixes: dict[tuple[int, str, str], str] = {}
        # message bytes -> the JSON of its "fields" (messages of _REPEATED only)
        self._fields: dict[bytes, str] = {}

    def message(self, wm: WireMessage, conn: Connection) -> None:
        """Write one message's object (usable as the decoder's ``emit`` callback)."""
        cls = wm.message.__class__
        if cls is DataRow:
            self._line(self._data_row_line(wm, conn))
        elif cls in _REPEATED:
            self._line(self._repeated_line(wm, conn))
        else:
            self.write(message_object(wm, conn))

    def _line(self, line: str) -> None:
        self.count += 1
        if self._batch == 1:
            self.out.write(line)
            return
        self._pending.append(line)
        if len(self._pending) >= self._batch:
            self.flush()

    def _lines(self, lines: list[str]) -> None:
        self.count += len(lines)
        if self._batch == 1:
            self.out.write("".join(lines))
            return
        self._pending += lines
        if len(self._pending) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Write the lines held back (with ``batch`` > 1)."""
        if self._pending:
            self.out.write("".join(self._pending))
            self._pending.clear()

    def _repeated_line(self, wm: WireMessage, conn: Connection) -> str:
        """The line of a message that recurs byte for byte (Sync, BindComplete, the same
        RowDescription ...): its "fields" JSON is made once per distinct bytes."""
        msg = wm.message
        key = (wm.conn, msg.direction, msg.name)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = json.dumps(
                {"conn": wm.conn, "client": conn.client_text, "server": conn.server_text,
                 "dir": msg.direction, "type": msg.name, "frame": 0},
                ensure_ascii=False)[:-2]
        fields = self._fields.get(msg.raw)
        if fields is None:
            if len(self._fields) >= _FIELDS_CACHED:
                self._fields.clear()
            obj = message_object(wm, conn)["fields"]
            fields = self._fields[msg.raw] = json.dumps(obj, ensure_ascii=False, default=_default)
        frame = "null" if wm.frame is None else wm.frame
        return (f'{prefix}{frame}, "offset": {msg.offset}, "length": {msg.length}, '
                f'"fields": {fields}}}\n')

    def rows(self, conn: Connection, result: ResultSet, rows: list[WireMessage]) -> None:
        """Write the lines of a run of DataRows of ``result`` (usable as the decoder's
        ``emit_rows`` callback): the lines `message` would write, one by one."""
        plain = _row_plan(result)[1]
        c_line = _c_json_data_row
        if not rows or not plain or not conn.decoder.utf8 or c_line is None:
            self._lines([self._data_row_line(wm, conn, result) for wm in rows])
            return
        prefix = self._row_prefix(rows[0], conn)
        lines = []
        for wm in rows:
            msg = wm.message
            line = c_line(prefix, wm.frame, msg.offset, msg.length, msg.values)  # type: ignore[attr-defined]
            lines.append(line if line is not None else self._data_row_line(wm, conn, result))
        self._lines(lines)

    def _row_prefix(self, wm: WireMessage, conn: Connection) -> str:
        """The start of a DataRow line of ``wm``'s connection, up to ``"frame": ``."""
        prefix = self._row_prefixes.get(wm.conn)
        if prefix is None:
            prefix = json.dumps({"conn": wm.conn, "client": conn.client_text,
                                 "server": conn.server_text, "dir": wm.message.direction,
                                 "type": "DataRow", "frame": 0}, ensure_ascii=False)[:-2]
            self._row_prefixes[wm.conn] = prefix
        return prefix

    def _data_row_line(self, wm: WireMessage, conn: Connection,
                       result: ResultSet | bool | None = False) -> str:
        """The line :meth:`write` would give for ``message_object(wm, conn)`` of a DataRow,
        byte for byte, built from cached pieces: DataRows are most of a big capture.
        ``result``: the row's result set when the caller knows it (False: look it up)."""
        msg = wm.message
        prefix = self._row_prefix(wm, conn)
        if result is False:
            result = conn.result_of(wm)
        plan, plain = _row_plan(result) if isinstance(result, ResultSet) else ([], True)
        row: tuple[bytes | None, ...] = msg.values  # type: ignore[attr-defined]
        frame = "null" if wm.frame is None else wm.frame
        if plain and conn.decoder.utf8:
            if _c_json_data_row is not None:
                line = _c_json_data_row(prefix, wm.frame, msg.offset, msg.length, row)
                if line is not None:
                    return cast(str, line)
            try:
                values_json = ", ".join([
                    "null" if raw is None else encode_basestring(raw.decode()) for raw in row])
            except UnicodeDecodeError:
                pass
            else:
                raws_json = ", ".join(["null" if raw is None else f'"{raw.hex()}"' for raw in row])
                return (f'{prefix}{frame}, "offset": {msg.offset}, "length": {msg.length}, '
                        f'"fields": {{"values": [{values_json}], "raw": [{raws_json}]}}}}\n')
        fields = json.dumps(_data_row_fields(conn, plan, row), ensure_ascii=False)
        return (f'{prefix}{frame}, "offset": {msg.offset}, "length": {msg.length}, '
                f'"fields": {fields}}}\n')

    def write(self, obj: dict[str, Any]) -> None:
        """Write one object as a line; values JSON cannot hold become their text form."""
        self._line(json.dumps(obj, ensure_ascii=False, default=_default) + "\n")


def _default(value: Any) -> Any:
    converted = value_to_json(value)
    if converted is value:
        return str(value)
    return converted
