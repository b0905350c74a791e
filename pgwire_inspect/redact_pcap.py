"""Redacted pcap output: secret bytes overwritten with 'x', lengths kept, checksums fixed.

``--write-pcap FILE --redact`` writes the capture with the bytes of every
masked field (PasswordMessage passwords and md5 hashes, SASLInitialResponse
and SASLResponse data, and the values of ``--redact-columns`` columns)
replaced by ASCII 'x', in every frame that carries them (a loopback capture
holds each packet twice). Message and field lengths do not change, so the
file still decodes; each changed frame's TCP checksum is recomputed
(RFC 9293, section 3.1: the pseudo-header, then the segment).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

from .capture import Frame, decode_frame, dissect_headers
from .capture.fragments import internet_checksum
from .conversation import Connection
from .decode import Decoded
from .protocol import DataRow
from .redact import Redaction

__all__ = ["redact_frames", "secret_ranges"]


def secret_ranges(conn: Connection, redaction: Redaction) -> dict[str, list[tuple[int, int]]]:
    """Stream byte ranges to mask, per direction: [(start, end), ...], end exclusive."""
    out: dict[str, list[tuple[int, int]]] = {"F": [], "B": []}
    for wm in conn.messages:
        msg = wm.message
        if type(msg).secret_fields and not redaction.show_secrets:
            for span in msg.spans():
                end = span.end
                if end > span.start and msg.raw[end - 1] == 0 and span.value.startswith("'"):
                    end -= 1  # keep a string's terminating zero byte: the message stays valid
                if redaction.hides_field(msg, span.name) and end > span.start:
                    out[msg.direction].append((msg.offset + span.start, msg.offset + end))
        elif isinstance(msg, DataRow) and redaction.column_patterns:
            result = conn.result_of(wm)
            if result is None:
                continue
            hidden = {i for i, c in enumerate(result.columns) if redaction.hides_column(c.name)}
            if not hidden:
                continue
            for span in msg.spans():
                if span.name.endswith(".value"):
                    index = int(span.name[len("values["):span.name.index("]")])
                    if index in hidden:
                        out["B"].append((msg.offset + span.start, msg.offset + span.end))
    return out


def _fix_tcp_checksum(data: bytearray, frame: Frame) -> None:
    tcp = [f for f in dissect_headers(frame) if f.layer == "tcp"]
    seg = decode_frame(frame)
    if not tcp or seg is None or seg.missing:
        return
    src = ipaddress.ip_address(seg.src).packed
    dst = ipaddress.ip_address(seg.dst).packed
    start = tcp[0].start
    end = seg.payload_offset + len(seg.payload)
    checksum = next(f for f in tcp if f.name == "Checksum")
    struct.pack_into("!H", data, checksum.start, 0)
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, end - start)
    else:
        pseudo = src + dst + struct.pack("!IxxxB", end - start, 6)
    struct.pack_into("!H", data, checksum.start,
                     internet_checksum(pseudo + bytes(data[start:end])))


def redact_frames(decoded: Decoded, frames: Iterable[Frame],
                  redaction: Redaction) -> list[Frame]:
    """The frames with every masked field's bytes replaced by 'x'.

    Args:
        decoded: the capture decoded with ``keep_frames=True`` (for frame locations).
        frames: the frames to write.
        redaction: what to mask (secrets unless ``show_secrets``; ``column_patterns``).

    Returns:
        New frames; frames without masked bytes are returned unchanged.
    """
    ranges = {c.key: secret_ranges(c, redaction) for c in decoded.connections}
    out: list[Frame] = []
    for frame in frames:
        loc = decoded.locations.get(frame.no)
        spans = ranges.get(loc.conn_key, {}).get(loc.direction, []) if loc else []
        if loc is None or not spans:
            out.append(frame)
            continue
        lo, hi = loc.stream_offset, loc.stream_offset + loc.length
        data = bytearray(frame.data)
        changed = False
        for start, end in spans:
            a, b = max(start, lo), min(end, hi)
            if a < b:
                at = loc.payload_offset + (a - lo)
                data[at : at + (b - a)] = b"x" * (b - a)
                changed = True
        if changed:
            _fix_tcp_checksum(data, frame)
            out.append(Frame(frame.no, frame.ts, frame.linktype, bytes(data), frame.wirelen))
        else:
            out.append(frame)
    return out
