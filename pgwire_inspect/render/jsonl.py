"""JSON lines: one object per protocol message, then one per ORM instance.

The keys are a stable interface for scripts (see README.md, "JSON lines").
"""

from __future__ import annotations

import json
from typing import IO, Any

from ..conversation import Connection, WireMessage
from ..copydata import replication_message
from ..protocol import CopyData, DataRow, RowDescription
from ..redact import MASK
from ..types import type_name, value_to_json, value_to_text
from ._policy import current

__all__ = ["JsonLinesWriter", "message_object"]


TEXT_OID = 25


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


def _row_plan(conn: Connection, result: Any) -> list[tuple[int, int, bool]]:
    """Per column of a result: (type OID, format, masked?), computed once per result."""
    plan = getattr(result, "_json_plan", None)
    if plan is None:
        policy = current()
        plan = [(c.type_oid, result.formats[i] if i < len(result.formats) else 0,
                 policy.hides_column(c.name)) for i, c in enumerate(result.columns)]
        result._json_plan = plan
    return plan


def _data_row_fields(conn: Connection, wm: WireMessage, msg: DataRow) -> dict[str, Any]:
    result = conn.result_of(wm)
    plan = _row_plan(conn, result) if result is not None else []
    values: list[str | None] = []
    raws: list[str | None] = []
    for i, raw in enumerate(msg.values):
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
        fields = _data_row_fields(conn, wm, msg)
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
    """

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def message(self, wm: WireMessage, conn: Connection) -> None:
        """Write one message's object (usable as the decoder's ``emit`` callback)."""
        self.write(message_object(wm, conn))

    def write(self, obj: dict[str, Any]) -> None:
        """Write one object as a line; values JSON cannot hold become their text form."""
        self.out.write(json.dumps(obj, ensure_ascii=False, default=_default) + "\n")
        self.count += 1


def _default(value: Any) -> Any:
    converted = value_to_json(value)
    if converted is value:
        return str(value)
    return converted
