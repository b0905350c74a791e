"""Byte-exact pcap and pcapng builders for tests, written from the format specs.

They use only ``struct``, independently of scapy, so that reading what
they build checks scapy's readers and our wrapping of them against the
specs ("PCAP Capture File Format", "PCAP Next Generation (pcapng) Capture
File Format", IETF OPSAWG drafts).
"""

from __future__ import annotations

import struct
from pathlib import Path

ZEEK = Path(__file__).resolve().parents[2].parent / "shared" / "captures" / "zeek"

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


def zeek(name: str) -> Path:
    """Path of one of the recorded Zeek test captures (read-only, outside the repo)."""
    return ZEEK / name


def read_pcap_records(raw: bytes) -> tuple[int, list[tuple[int, int, bytes, int]]]:
    """An independent pcap walker: (linktype, [(sec, frac, data, wirelen), ...])."""
    magic = raw[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack_from(endian + "I", raw, 20)[0]
    out = []
    off = 24
    while off + 16 <= len(raw):
        sec, frac, caplen, wirelen = struct.unpack_from(endian + "IIII", raw, off)
        out.append((sec, frac, raw[off + 16 : off + 16 + caplen], wirelen))
        off += 16 + caplen
    return linktype, out


def pcap(
    records: list[tuple[int, int, bytes, int]],
    *,
    linktype: int = 1,
    nano: bool = False,
    endian: str = "<",
    snaplen: int = 262144,
) -> bytes:
    """A pcap file: records are (seconds, micro- or nanoseconds, data, wirelen)."""
    magic = PCAP_MAGIC_NS if nano else PCAP_MAGIC_US
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, data, wirelen in records:
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), wirelen))
        out.append(data)
    return b"".join(out)


def pcap_record_ends(raw: bytes) -> list[int]:
    """Byte offsets where each pcap record ends (the file header ends at 24)."""
    endian = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    ends = []
    off = 24
    while off + 16 <= len(raw):
        caplen = struct.unpack_from(endian + "I", raw, off + 8)[0]
        off += 16 + caplen
        ends.append(off)
    return ends


# -- pcapng ------------------------------------------------------------------


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def option(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + _pad(value)


def end_of_options(endian: str) -> bytes:
    return struct.pack(endian + "HH", 0, 0)


def block(endian: str, btype: int, body: bytes) -> bytes:
    body = _pad(body)
    total = 12 + len(body)
    return struct.pack(endian + "II", btype, total) + body + struct.pack(endian + "I", total)


def shb(endian: str, options: bytes = b"") -> bytes:
    body = struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options
    return block(endian, 0x0A0D0D0A, body)


def idb(endian: str, linktype: int, *, snaplen: int = 0, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = option(endian, 9, bytes([tsresol])) + end_of_options(endian)
    return block(endian, 1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts)


def epb(
    endian: str,
    ifid: int,
    ts_units: int,
    data: bytes,
    wirelen: int | None = None,
    comment: bytes | None = None,
) -> bytes:
    body = struct.pack(
        endian + "IIIII",
        ifid,
        ts_units >> 32,
        ts_units & 0xFFFFFFFF,
        len(data),
        len(data) if wirelen is None else wirelen,
    ) + _pad(data)
    if comment is not None:
        body += option(endian, 1, comment) + end_of_options(endian)
    return block(endian, 6, body)


def spb(endian: str, data: bytes, wirelen: int | None = None) -> bytes:
    return block(
        endian, 3, struct.pack(endian + "I", len(data) if wirelen is None else wirelen) + data
    )


def isb(endian: str, ifid: int, ts_units: int) -> bytes:
    """Interface Statistics Block (type 5), as Wireshark writes at the end of files."""
    return block(
        endian, 5, struct.pack(endian + "III", ifid, ts_units >> 32, ts_units & 0xFFFFFFFF)
    )


def block_ends(raw: bytes, endian: str) -> list[int]:
    """Byte offsets where each pcapng block ends."""
    ends = []
    off = 0
    while off + 8 <= len(raw):
        off += struct.unpack_from(endian + "I", raw, off + 4)[0]
        ends.append(off)
    return ends
