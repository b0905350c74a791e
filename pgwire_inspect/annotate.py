"""Every byte of a frame named: link, IP and TCP header fields, then PostgreSQL fields.

The annotated hex dump and the byte-by-byte explanation read the same list
of `Annotation`: byte ranges of ``frame.data`` that cover it exactly once,
in order, each saying which layer and field the bytes belong to, their
value and what that value means in plain words.

Headers come from `pgwire_inspect.capture.dissect_headers`; the TCP payload
is mapped through the frame's place in its connection's stream
(`Decoded.location`) onto the messages decoded from that stream and the
byte span of each of their fields (`Message.spans`). A frame whose bytes an
earlier one already delivered (a retransmission, or the second copy of each
packet in a Linux loopback capture) is annotated the same way and says so.

Specs: PostgreSQL docs, "Frontend/Backend Protocol", "Message Formats" and
"Error and Notice Message Fields"; RFC 791 (IPv4), RFC 8200 (IPv6), RFC 9293
(TCP), RFC 7323 (TCP timestamps, window scale), IEEE 802.3 (padding).
"""

from __future__ import annotations

import re
import struct
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, replace
from typing import Any

from .annotate_headers import header_meaning
from .capture import Frame, HeaderField, decode_frame, dissect_headers
from .catalog import Catalog
from .conversation import Connection, ResultSet, WireMessage
from .decode import Decoded, FrameLocation
from .errors import CaptureError
from .protocol import (
    AUTH_NAMES,
    ERROR_FIELD_NAMES,
    Bind,
    DataRow,
    MalformedMessage,
    Message,
    RowDescription,
    Span,
)
from .types import type_name

__all__ = ["LAYERS", "Annotation", "FrameAnnotator", "annotate_frame", "annotate_message"]

#: The layers an annotation can belong to, in the order they appear in a frame.
LAYERS = ("link", "ip", "tcp", "pgsql", "payload", "trailer")

_INDEXED = re.compile(r"^(\w+)\[(\d+)\](?:\.(\w+))?$")
_FORMATS = {0: "text", 1: "binary"}
_STATUS = {"I": "idle (not in a transaction block)", "T": "in a transaction block",
           "E": "in a failed transaction block (queries are rejected until it ends)"}
_REQUEST_CODES = {80877102: "CancelRequest", 80877103: "SSLRequest", 80877104: "GSSENCRequest"}
# Colour kinds of message fields by span name (see `_field_kind`).
_KINDS = {name: kind for kind, names in (
    ("type", ("type",)), ("terminator", ("terminator",)), ("status", ("status", "answer", "kind")),
    ("length", ("length", "data_length", "result_length")),
    ("name", ("parameter", "parameter_name", "channel", "statement", "portal", "target",
              "mechanism", "mechanisms", "options")),
    ("value", ("data", "result", "secret_key", "salt", "value", "payload", "password",
               "arguments")),
    ("string", ("sql", "query", "tag", "message", *ERROR_FIELD_NAMES.values())),
) for name in names}


@dataclass(frozen=True, slots=True)
class Annotation:
    """One field's bytes in a frame (or in one message), and what they mean.

    Attributes:
        start: byte offset of the first byte, in ``frame.data`` (or in the message).
        end: byte offset just past the last byte (exclusive).
        layer: one of `LAYERS`: "link", "ip", "tcp", "pgsql", "payload" (TCP
            payload that is not decoded: not PostgreSQL, encrypted, malformed,
            or different from the bytes first delivered), "trailer" (bytes
            after the IP packet: Ethernet padding).
        message: the PostgreSQL message's name ("RowDescription"); "" for headers
            and undecoded bytes ("MalformedMessage" for a malformed stretch).
        message_index: which message within the frame (0, 1, ...); -1 for headers.
        field: the field's name: a header field's name ("Source port") or a
            message field's span name ("type", "length", "columns[0].type_oid").
        value: the field's value as short text.
        meaning: what the value means, in plain English ("type OID 1043 is varchar").
        continues_before: the message started in an earlier frame.
        continues_after: the message goes on in a later frame.
        cut_before: this field itself started in an earlier frame.
        cut_after: this field itself goes on in a later frame.
        kind: what sort of field it is, for colouring: "header", "type", "length",
            "count", "name", "string", "oid", "number", "column length", "value",
            "status", "terminator", "payload", "malformed", "trailer".
        direction: "F" (frontend to backend) or "B" for PostgreSQL bytes, else "".
    """

    start: int
    end: int
    layer: str
    message: str
    message_index: int
    field: str
    value: str
    meaning: str = ""
    continues_before: bool = False
    continues_after: bool = False
    cut_before: bool = False
    cut_after: bool = False
    kind: str = ""
    direction: str = ""


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(raw: bytes) -> str:
    return repr(raw.decode("utf-8", "backslashreplace"))


def _field_kind(msg: Message, name: str) -> str:
    """The colour kind of a message field, from its span name."""
    m = _INDEXED.match(name)
    base, sub = (m.group(1), m.group(3) or "") if m else (name, "")
    if isinstance(msg, MalformedMessage):
        return "malformed"
    if name == "code" and msg.type_code == b"R":
        return "number"
    if name in _KINDS:
        return _KINDS[name]
    if sub in ("length", "name", "value"):
        return {"length": "column length"}.get(sub, sub)
    if base.endswith("_count"):
        return "count"
    if name.endswith("oid") or base == "parameter_types":
        return "oid"
    if base in _KINDS:
        return _KINDS[base]
    if name.endswith(".code"):
        return "status"
    return "string" if name.startswith(("parameters.", "field_")) else "number"


class _ConnIndex:
    """Per connection: messages by direction in stream order; DataRow and Bind context."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.by_dir: dict[str, list[WireMessage]] = {"F": [], "B": []}
        for wm in conn.messages:
            self.by_dir.setdefault(wm.direction, []).append(wm)
        for lst in self.by_dir.values():
            lst.sort(key=lambda w: w.message.offset)
        self.starts = {d: [w.message.offset for w in lst] for d, lst in self.by_dir.items()}
        self.rows: dict[int, tuple[ResultSet, WireMessage]] = {}
        self.binds: dict[int, list[tuple[int, int, bytes | None]]] = {}
        for q in conn.queries:
            for r in q.results:
                for row in r.rows:
                    self.rows[id(row.message)] = (r, row)
            params = list(q.parameters)
            for wm in q.requests:
                if isinstance(wm.message, Bind):
                    n = len(wm.message.parameters)
                    self.binds[id(wm.message)], params = params[:n], params[n:]

    def overlapping(self, direction: str, start: int, end: int) -> list[WireMessage]:
        """Messages of ``direction`` with bytes in the stream range [start, end)."""
        lst = self.by_dir.get(direction, [])
        i = max(bisect_right(self.starts.get(direction, []), start) - 1, 0)
        out = []
        while i < len(lst) and lst[i].message.offset < end:
            if lst[i].message.end > start:
                out.append(lst[i])
            i += 1
        return out


class _Deliveries:
    """Which frame first delivered each stream byte, per connection and direction."""

    def __init__(self, locations: dict[int, FrameLocation]) -> None:
        self.pieces: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
        self.duplicate_of: dict[int, int] = {}
        for no in sorted(locations):
            loc = locations[no]
            s, e = loc.stream_offset, loc.stream_offset + loc.length
            lst = self.pieces.setdefault((loc.conn_key, loc.direction), [])
            i = max(bisect_left(lst, (s, -1, -1)) - 1, 0)
            pos, new = s, []
            while i < len(lst) and lst[i][0] < e:
                ps, pe, pf = lst[i]
                if pe > pos:
                    self.duplicate_of.setdefault(no, pf)
                    if ps > pos:
                        new.append((pos, ps, no))
                    pos = max(pos, pe)
                i += 1
            if pos < e:
                new.append((pos, e, no))
            for piece in new:
                insort(lst, piece)

    def frame_at(self, key: tuple[int, str], pos: int) -> int | None:
        """The frame that first delivered stream byte ``pos``, or None."""
        lst = self.pieces.get(key, [])
        i = bisect_right(lst, (pos, 1 << 62, 0)) - 1
        return lst[i][2] if i >= 0 and lst[i][0] <= pos < lst[i][1] else None


class FrameAnnotator:
    """Annotates the frames of one decoded capture, building its indexes once.

    Args:
        decoded: the result of ``decode_frames(..., keep_frames=True)``.
        catalog: names for table, column and type OIDs, if known.
    """

    def __init__(self, decoded: Decoded, catalog: Catalog | None = None) -> None:
        self.decoded = decoded
        self.catalog = catalog
        self.deliveries = _Deliveries(decoded.locations)
        self._conns: dict[int, _ConnIndex] = {}

    def annotate(self, frame: Frame) -> list[Annotation]:
        """Annotate every byte of ``frame`` (see `annotate_frame`)."""
        data = frame.data
        try:
            headers = dissect_headers(frame)
            seg = decode_frame(frame)
        except CaptureError as exc:
            return [_undecoded(0, len(data), f"{exc}: the bytes cannot be dissected")]
        located = self.decoded.location(frame.no)
        conn, loc = located if located else (None, None)
        out = [Annotation(h.start, h.end, h.layer, "", -1, h.name, h.value,
                          header_meaning(h, data, conn, loc), kind="header") for h in headers]
        head_end = out[-1].end if out else 0
        if seg is not None:
            pstart, pend = seg.payload_offset, seg.payload_offset + len(seg.payload)
        else:
            pstart, pend = head_end, _ip_end(headers, data)
        pstart = max(pstart, head_end)
        if head_end < pstart:
            out.append(_undecoded(head_end, pstart, "bytes the header dissector does not name"))
        if pstart < pend and loc is not None and conn is not None:
            out.extend(self._payload(frame, conn, loc, pstart, pend))
        elif pstart < pend:
            out.append(_undecoded(pstart, pend, "TCP payload of a connection that is not "
                                  "decoded (not PostgreSQL, or not on a PostgreSQL port)"
                                  if seg is not None else "the IP packet's payload: not a TCP "
                                  "segment this tool decodes"))
        if pend < len(data):
            out.append(Annotation(pend, len(data), "trailer", "", -1, "trailer",
                                  f"{len(data) - pend} bytes", "bytes after the end of the IP "
                                  "packet (Ethernet padding to the 60-byte minimum frame)",
                                  kind="trailer"))
        return _cover(out, len(data))

    def _payload(self, frame: Frame, conn: Connection, loc: FrameLocation, pstart: int,
                 pend: int) -> list[Annotation]:
        data, d, s = frame.data, loc.direction, loc.stream_offset
        e = s + (pend - pstart)
        base = pstart - s  # frame offset = stream offset + base
        key = (conn.key, d)
        out: list[Annotation] = []
        if s < 0:
            out.append(_undecoded(pstart, min(pend, base), "bytes from before the start of the "
                                  "captured stream"))
        enc = conn.state.encrypted_from.get(d, -1)
        limit = e if enc < 0 else max(min(e, enc), 0)
        idx = self._conns.get(conn.key) or self._conns.setdefault(conn.key, _ConnIndex(conn))
        for i, wm in enumerate(idx.overlapping(d, max(s, 0), limit)):
            msg = wm.message
            lo, hi = max(msg.offset, s, 0), min(msg.end, limit)
            raw_lo, raw_hi = lo - msg.offset, min(hi - msg.offset, len(msg.raw))
            if raw_lo < raw_hi and data[lo + base : lo + base + raw_hi - raw_lo] != \
                    msg.raw[raw_lo:raw_hi]:
                out.append(_undecoded(lo + base, hi + base, "bytes that differ from those first "
                                      f"delivered, which made a {msg.name}"))
                continue
            first = len(out)
            out.extend(_message_annotations(wm, idx, self.catalog, i, -base, lo, hi))
            if msg.offset < s:
                prev = self.deliveries.frame_at(key, s - 1) or wm.frame
                out[first] = _note(out[first], f"the {msg.name} started in an earlier frame "
                                   f"(frame {prev})", after=True)
            if msg.end > e:
                nxt = self.deliveries.frame_at(key, e)
                out[-1] = _note(out[-1], f"the {msg.name} goes on in a later frame "
                                f"({f'frame {nxt}' if nxt else 'not captured'})", after=True)
        if 0 <= enc < e:
            who = conn.state.encrypted_by or "TLS"
            out.append(_undecoded(max(enc, s, 0) + base, pend, f"encrypted ({who}) bytes: "
                                  "nothing after the switch to encryption can be decoded"))
        dup = self.deliveries.duplicate_of.get(frame.no)
        if dup is not None and dup != frame.no:
            out = _cover(out, pend, pstart)
            out[0] = _note(out[0], f"retransmission/duplicate of frame {dup}")
        return out


def _note(a: Annotation, note: str, *, after: bool = False) -> Annotation:
    parts = [a.meaning, note] if after else [note, a.meaning]
    return replace(a, meaning="; ".join(p for p in parts if p))


def _undecoded(start: int, end: int, why: str) -> Annotation:
    return Annotation(start, end, "payload", "", -1, "payload", f"{end - start} bytes", why,
                      kind="payload")


def _cover(items: list[Annotation], end: int, start: int = 0) -> list[Annotation]:
    """Sort, drop empty and overlapping bytes, and fill holes so [start, end) is covered once."""
    out: list[Annotation] = []
    pos = start
    for a in sorted(items, key=lambda a: (a.start, a.end)):
        lo, hi = max(a.start, pos), min(a.end, end)
        if hi <= lo:
            continue
        if lo > pos:
            out.append(_undecoded(pos, lo, "bytes not part of any decoded message"))
        out.append(a if (lo, hi) == (a.start, a.end) else replace(a, start=lo, end=hi))
        pos = hi
    if pos < end:
        out.append(_undecoded(pos, end, "bytes not part of any decoded message"))
    return out


def _ip_end(headers: list[HeaderField], data: bytes) -> int:
    """End of the IP packet in ``data`` from its length field (for non-TCP frames)."""
    ip = next((h for h in headers if h.layer == "ip"), None)
    total = 0
    if ip is not None and ip.name == "Version / IHL" and len(data) >= ip.start + 4:
        total = struct.unpack_from("!H", data, ip.start + 2)[0]
    elif ip is not None and len(data) >= ip.start + 6:
        plen = struct.unpack_from("!H", data, ip.start + 4)[0]
        total = plen + 40 if plen else 0
    return min(ip.start + total, len(data)) if ip is not None and total else len(data)


# ------------------------------------------------------------------ PostgreSQL fields


def annotate_message(wm: WireMessage, conn: Connection, catalog: Catalog | None = None
                     ) -> list[Annotation]:
    """Annotate one message alone: offsets are relative to its first byte.

    Args:
        wm: the message (from ``conn.messages``).
        conn: its connection (for DataRow values and Bind parameter types).
        catalog: names for table, column and type OIDs, if known.

    Returns:
        Annotations covering ``wm.message.raw`` exactly once, in order (a
        malformed stretch longer than the 4 KiB its ``raw`` keeps is covered
        up to ``len(raw)``).
    """
    msg = wm.message
    end = msg.offset + len(msg.raw)
    anns = _message_annotations(wm, _ConnIndex(conn), catalog, 0, msg.offset, msg.offset, end)
    return _cover(anns, len(msg.raw))


def _message_annotations(wm: WireMessage, idx: _ConnIndex, catalog: Catalog | None, index: int,
                         origin: int, lo: int, hi: int) -> list[Annotation]:
    """Annotations of the message's bytes in stream range [lo, hi), offsets minus ``origin``."""
    msg = wm.message
    bad = isinstance(msg, MalformedMessage)
    spans = [Span(0, msg.length, "malformed", getattr(msg, "reason", ""))] if bad else msg.spans()
    ctx = _Context(msg, idx, catalog)
    out = []
    for sp in spans:
        a, b = msg.offset + sp.start, msg.offset + sp.end
        if b <= lo or a >= hi:
            continue
        value, meaning = ctx.describe(sp)
        if a < lo or b > hi:
            here = f"{min(b, hi) - max(a, lo)} of its {sp.end - sp.start} bytes are here"
            meaning = f"{meaning}; {here}" if meaning else here
        out.append(Annotation(max(a, lo) - origin, min(b, hi) - origin,
                              "payload" if bad else "pgsql", msg.name, index, sp.name,
                              _short(value), meaning, msg.offset < lo, msg.end > hi, a < lo,
                              b > hi, _field_kind(msg, sp.name), msg.direction))
    return out


class _Context:
    """What one message's field meanings need: its result set, parameters, catalog."""

    def __init__(self, msg: Message, idx: _ConnIndex, catalog: Catalog | None) -> None:
        self.msg = msg
        self.conn = idx.conn
        self.catalog = catalog
        self.params = idx.binds.get(id(msg), [])
        self.result: ResultSet | None = None
        self.values: list[Any] | None = None
        if id(msg) in idx.rows:
            self.result, row = idx.rows[id(msg)]
            self.values = self.conn.decode_row(self.result, row)

    def type_text(self, oid: int, typmod: int = -1) -> str:
        if self.catalog is not None:
            return self.catalog.type_name(oid, typmod)
        return type_name(oid, typmod)

    def describe(self, sp: Span) -> tuple[str, str]:
        """(value, meaning) of one field."""
        msg, name, value = self.msg, sp.name, sp.value
        if name == "type":
            way = "frontend → backend" if msg.direction == "F" else "backend → frontend"
            return value, f"type byte {value}: {msg.name} ({way})"
        if name == "length" and msg.type_code:
            return value, (f"length {value}: counts itself and the body, not the type byte, "
                           f"so the message is {int(value) + 1} bytes")
        if name == "length":
            return value, f"length {value}: the whole packet, length field included"
        if name == "malformed":
            return f"{sp.end - sp.start} bytes", f"not a valid message: {value}"
        m = _INDEXED.match(name)
        if m:
            return self._indexed(m.group(1), int(m.group(2)), m.group(3) or "", value)
        return value, self._plain(name, value)

    def _column_name(self, i: int) -> str:
        cols = self.result.columns if self.result is not None else ()
        return f"column {i + 1} ({cols[i].name})" if i < len(cols) else f"column {i + 1}"

    def _indexed(self, base: str, i: int, sub: str, value: str) -> tuple[str, str]:
        msg = self.msg
        if isinstance(msg, RowDescription) and base == "columns" and i < len(msg.columns):
            return value, self._column_field(msg, i, sub)
        if base in ("values", "parameters", "arguments") and sub == "length":
            what = self._column_name(i) if base == "values" else f"{base[:-1]} ${i + 1}"
            noun = "column" if base == "values" else base[:-1]
            if value == "-1":
                return value, f"{noun} length -1 means NULL ({what}): no bytes follow"
            return value, f"the value of {what} is the next {_plural(int(value), 'byte')}"
        if base == "values" and sub == "value" and isinstance(msg, DataRow):
            return self._row_value(msg, i, value)
        if base == "parameters" and sub == "value" and isinstance(msg, Bind):
            return self._bind_value(msg, i, value)
        if base == "parameter_types":
            oid = int(value)
            return value, (f"parameter ${i + 1}: type OID {oid} is {self.type_text(oid)}" if oid
                           else f"parameter ${i + 1}: type left to the server (OID 0)")
        if base.endswith("formats"):
            return value, f"format {value}: {_FORMATS.get(int(value), 'unknown')}"
        if base == "mechanisms":
            return value, f"SASL mechanism offered: {value}"
        if base == "options":
            return value, f"protocol option the server does not know: {value}"
        return value, ""

    def _column_field(self, msg: RowDescription, i: int, sub: str) -> str:
        col, cat = msg.columns[i], self.catalog
        if sub == "name":
            return f"name of column {i + 1}: {col.name}"
        if sub == "table_oid" and col.table_oid == 0:
            return "table OID 0: the column is not a table's column (an expression)"
        if sub == "table_oid":
            named = cat.table_name(col.table_oid) if cat else None
            return (f"table OID {col.table_oid} is {named}" if named else
                    f"table OID {col.table_oid}: the table the column comes from")
        if sub == "column" and col.column == 0:
            return "attribute number 0: not a table's column"
        if sub == "column":
            named = cat.column_name(col.table_oid, col.column) if cat else None
            return f"attribute number {col.column} of that table" + (f": {named}" if named else "")
        if sub == "type_oid":
            return f"type OID {col.type_oid} is {self.type_text(col.type_oid)}"
        if sub == "typlen":
            return {-1: "typlen -1: a variable-length type (varlena)",
                    -2: "typlen -2: a zero-terminated C string type"}.get(
                col.typlen, f"typlen {col.typlen}: values of this type are {col.typlen} bytes")
        if sub == "typmod" and col.typmod < 0:
            return "typmod -1: no type modifier"
        if sub == "typmod":
            return f"typmod {col.typmod} means {self.type_text(col.type_oid, col.typmod)}"
        if sub == "format":
            return f"format {col.format}: values will come as {_FORMATS.get(col.format, '?')}"
        return ""

    def _row_value(self, msg: DataRow, i: int, value: str) -> tuple[str, str]:
        raw, res = msg.values[i] or b"", self.result
        fmt = res.formats[i] if res is not None and i < len(res.formats) else 0
        shown = _text(raw) if fmt == 0 else value
        where = f"{self._column_name(i)}, {_FORMATS.get(fmt, '?')} format"
        if res is None or i >= len(res.columns) or self.values is None:
            return shown, where
        col, decoded = res.columns[i], self.values[i]
        where += f", type {self.type_text(col.type_oid, col.typmod)}"
        if isinstance(decoded, Exception):
            return shown, f"{where}; cannot be decoded: {decoded}"
        return shown, f"{where}; decodes to {_short(repr(decoded))} ({type(decoded).__name__})"

    def _bind_value(self, msg: Bind, i: int, value: str) -> tuple[str, str]:
        oid, fmt, raw = self.params[i] if i < len(self.params) else (0, 0, msg.parameters[i])
        what = f"parameter ${i + 1}, {_FORMATS.get(fmt, '?')} format"
        if oid:
            what += f", type {self.type_text(oid)}"
            try:
                decoded = self.conn.decoder.decode(oid, fmt, raw or b"")
                what += f"; decodes to {_short(repr(decoded))} ({type(decoded).__name__})"
            except Exception:
                pass  # a parameter that does not decode is shown raw
        return (_text(raw or b"") if fmt == 0 else value), what

    def _plain(self, name: str, value: str) -> str:
        msg = self.msg
        text = value[1:-1] if value[:1] in "'\"" else value
        if name.endswith("_count"):
            noun = name[:-6].replace("_", " ")
            if noun == "column":
                noun = {"DataRow": "column value", "RowDescription": "column description"}.get(
                    msg.name, "column format")
            return f"{_plural(int(value), noun)} follow"
        if name == "code" and msg.type_code == b"R":
            return f"code {value}: {AUTH_NAMES.get(int(value), 'unknown authentication code')}"
        if name == "code":
            return f"SQLSTATE {text}: the error code (PostgreSQL docs, Appendix A)"
        if name.endswith(".code"):
            return f"field code {value}: {name[:-5].replace('_', ' ')} follows"
        if name in ERROR_FIELD_NAMES.values():
            return f"{name.replace('_', ' ')}: {_short(text)}"
        if name == "protocol_version":
            return f"protocol version {int(value) >> 16}.{int(value) & 0xFFFF}"
        if name == "request_code":
            return f"request code {value}: {_REQUEST_CODES.get(int(value), 'unknown')}"
        if name.startswith("parameters."):
            return f"startup parameter {name[11:]} = {text}"
        if name == "data" and msg.name == "CopyData":
            return f"COPY data: {_short(_text(getattr(msg, 'data', b'')))}"
        unnamed = " (the unnamed one)" if not text else ""
        return {
            "status": f"ReadyForQuery {value} means {_STATUS.get(text, 'an unknown status')}",
            "answer": (f"{value}: the server agrees, encrypted bytes follow" if text in "SG"
                       else f"{value}: no encryption, the session goes on in plaintext"),
            "sql": "the SQL text of the query, zero-terminated",
            "query": "the SQL text to prepare, zero-terminated",
            "tag": f"command tag: {text} (the command that finished, with its row count)",
            "parameter": f"the run-time parameter {text}",
            "value": f"its value is now {text!r}",
            "process_id": f"backend process ID {value}",
            "secret_key": "secret key a CancelRequest must quote",
            "salt": "random salt for the MD5 password hash",
            "terminator": "a zero byte: the end of the list",
            "parameter_name": f"startup parameter name {text}",
            "statement": f"prepared statement {text!r}{unnamed}",
            "portal": f"portal {text!r}{unnamed}",
            "kind": {"S": "'S': a prepared statement", "P": "'P': a portal"}.get(text, ""),
            "target": f"name of the statement or portal: {text!r}{unnamed}",
            "max_rows": "0: no row limit" if value == "0" else f"return at most {value} rows",
            "channel": f"NOTIFY channel {text}",
            "payload": f"NOTIFY payload {text!r}",
            "format": f"format {value}: {_FORMATS.get(int(value), '?')}" if value.isdigit()
            else "",
        }.get(name, "")


# ------------------------------------------------------------------ entry point

_last: list[FrameAnnotator] = []


def annotate_frame(decoded: Decoded, frame: Frame, *, catalog: Catalog | None = None
                   ) -> list[Annotation]:
    """Name every byte of one frame: headers, PostgreSQL fields, undecoded bytes.

    Args:
        decoded: the capture decoded with ``keep_frames=True`` (its
            ``locations`` place each frame's payload in its connection's stream).
        frame: one of ``decoded.kept_frames``.
        catalog: names for table, column and type OIDs, if known.

    Returns:
        Annotations covering ``frame.data`` exactly once, in byte order, with
        no gap and no overlap: link, IP and TCP header fields, then each
        field of each PostgreSQL message in the payload (clipped to the
        frame, with ``continues_before``/``continues_after`` for a message
        cut by the frame boundary), then a trailer. A retransmission or
        duplicate says "retransmission/duplicate of frame N" in the meaning
        of its first payload annotation. Odd frames never raise: bytes that
        cannot be dissected are layer "payload".

    The indexes built for ``decoded`` are kept (with a reference to it) for
    the next call with the same ``decoded`` and ``catalog``, until another
    capture is annotated; a `FrameAnnotator` holds them explicitly.
    """
    if not _last or _last[0].decoded is not decoded or _last[0].catalog is not catalog:
        _last[:] = [FrameAnnotator(decoded, catalog)]
    return _last[0].annotate(frame)
