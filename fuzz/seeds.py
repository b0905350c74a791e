"""Real inputs the fuzzers start from.

Everything is read in place: the recorded captures in ``captures/`` (the
pcaps and the relay's byte logs in the JSON files beside them) and the
Zeek test captures in ``../shared/captures/zeek/``. Nothing is copied.
Derived seeds (the same frames as pcapng, gzip-compressed files, hex dump
text) are built in memory from those.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pgwire_inspect.capture import Frame, decode_frame, open_capture, write_pcap
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.reassembly import ConnectionStarted, Reassembler, StreamData

__all__ = [
    "CAPTURES",
    "ROOT",
    "ZEEK",
    "Seeds",
    "capture_paths",
    "hexdump_text",
    "load_seeds",
    "pcap_bytes",
    "relay_streams",
]

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
ZEEK = ROOT.parent / "shared" / "captures" / "zeek"
HEXDUMP_FIXTURES = ROOT / "tests" / "capture" / "data"


@dataclass(frozen=True)
class Seeds:
    """The seed inputs of every target.

    Attributes:
        streams: (frontend bytes, backend bytes) of one connection each:
            the relay logs first, then the reassembled TCP payloads of the pcaps.
        conversations: the connections of the pcaps as the capture delivered
            them: (direction, bytes) chunks in capture order.
        files: capture files as bytes: pcap, pcapng and gzip-compressed pcap.
        frames: frames of the pcaps (link type, bytes as captured).
        hexdumps: hex dump texts (tool output fixtures and dumps of real frames).
    """

    streams: tuple[tuple[bytes, bytes], ...]
    conversations: tuple[tuple[tuple[str, bytes], ...], ...]
    files: tuple[bytes, ...]
    frames: tuple[Frame, ...]
    hexdumps: tuple[str, ...]


def capture_paths() -> list[Path]:
    """The pcap files of ``captures/`` and of the Zeek folder (if it is there), sorted."""
    paths = sorted(CAPTURES.glob("*.pcap"))
    if ZEEK.is_dir():
        paths += sorted(ZEEK.glob("*.pcap"))
    return paths


def relay_streams() -> list[tuple[bytes, bytes]]:
    """The (frontend, backend) byte streams the relay logged in ``captures/*.json``."""
    out = []
    for path in sorted(CAPTURES.glob("*.json")):
        ref = json.loads(path.read_text())
        for s in ref.get("streams", []):
            out.append((bytes.fromhex(s.get("F", "")), bytes.fromhex(s.get("B", ""))))
    return out


def _conversations(frames: Iterable[Frame]) -> list[tuple[tuple[str, bytes], ...]]:
    """Reassemble every TCP connection of ``frames``: its chunks in capture order."""
    reasm = Reassembler(server_ports=None)
    conns: dict[int, list[tuple[str, bytes]]] = {}
    events: list[object] = []
    for frame in frames:
        try:
            seg = decode_frame(frame)
        except CaptureError:
            continue
        if seg is not None:
            events += reasm.feed(seg)
    events += reasm.finish()
    for ev in events:
        if isinstance(ev, ConnectionStarted):
            conns[ev.conn] = []
        elif isinstance(ev, StreamData):
            conns[ev.conn].append((ev.direction, ev.data))
    return [tuple(c) for c in conns.values() if c]


def _streams(conversation: Sequence[tuple[str, bytes]]) -> tuple[bytes, bytes]:
    return (b"".join(b for d, b in conversation if d == "F"),
            b"".join(b for d, b in conversation if d == "B"))


def pcap_bytes(frames: Sequence[Frame], *, linktype: int | None = None, nano: bool = True) -> bytes:
    """A pcap file (little-endian) holding ``frames``, built in memory.

    Args:
        frames: the frames; their ``linktype`` is ignored.
        linktype: the file's LINKTYPE_* (default: the first frame's, or 1).
        nano: nanosecond (True) or microsecond timestamps.

    Returns:
        The file's bytes, as the "PCAP Capture File Format" draft lays them out.
    """
    if linktype is None:
        linktype = frames[0].linktype if frames else 1
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    scale = 1_000_000_000 if nano else 1_000_000
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for f in frames:
        sec = int(f.ts)
        frac = min(round((f.ts - sec) * scale), scale - 1)
        out.append(struct.pack("<IIII", sec & 0xFFFFFFFF, frac, len(f.data), f.wirelen))
        out.append(f.data)
    return b"".join(out)


def _pcapng_bytes(frames: Sequence[Frame]) -> bytes | None:
    """The same frames as a pcapng file, written by `write_pcap` with two link types.

    The first Ethernet frame is stored as raw IP (LINKTYPE 101), which makes
    `write_pcap` write pcapng with two interfaces.
    """
    eth = [f for f in frames if f.linktype == 1 and len(f.data) > 14]
    if not eth:
        return None
    first = eth[0]
    mixed = [replace(first, linktype=101, data=first.data[14:], wirelen=first.wirelen - 14)]
    mixed += [f for f in frames if f is not first]
    fd, name = tempfile.mkstemp(suffix=".pcapng")
    os.close(fd)
    try:
        write_pcap(name, mixed)
        return Path(name).read_bytes()
    finally:
        os.unlink(name)


def hexdump_text(frames: Sequence[Frame], style: str = "wireshark") -> str:
    """Hex dump text of ``frames`` in the layout one tool prints.

    Args:
        frames: the frames to dump.
        style: ``"wireshark"`` (``0000  45 00 ...  E..``), ``"tcpdump"``
            (``\\t0x0000:  4500 0034 ...`` after a ``-tt`` packet line) or
            ``"od"`` (``000000 45 00 ...`` ending with the final offset).

    Returns:
        The text, blocks separated by blank lines.
    """
    blocks = []
    for f in frames:
        lines = []
        data = f.data
        if style == "tcpdump":
            lines.append(f"{f.ts:.6f} IP 127.0.0.1.5432 > 127.0.0.1.40000: Flags [P.], "
                         f"length {len(data)}")
        for off in range(0, len(data), 16):
            chunk = data[off : off + 16]
            if style == "tcpdump":
                groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
                lines.append(f"\t0x{off:04x}:  {groups}")
            elif style == "od":
                lines.append(f"{off:06x} " + " ".join(f"{b:02x}" for b in chunk))
            else:
                ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
                hexes = " ".join(f"{b:02x}" for b in chunk)
                lines.append(f"{off:04x}  {hexes:<47}   {ascii_}")
        if style == "od":
            lines.append(f"{len(data):06x}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


@functools.lru_cache(maxsize=1)
def load_seeds() -> Seeds:
    """Read every seed (once per process).

    Returns:
        The `Seeds`. Streams come from the relay logs and from the pcaps'
        reassembled TCP payloads; files are the pcaps as they are, plus
        pcapng and gzip variants of a few; frames are every frame of the
        pcaps; hex dumps are the tool-output fixtures of the test suite plus
        dumps of real frames in three layouts.
    """
    streams = relay_streams()
    conversations: list[tuple[tuple[str, bytes], ...]] = []
    files: list[bytes] = []
    frames: list[Frame] = []
    per_file: list[list[Frame]] = []
    for path in capture_paths():
        raw = path.read_bytes()
        files.append(raw)
        fs = list(open_capture(path))
        per_file.append(fs)
        frames += fs
        convs = _conversations(fs)
        conversations += convs
        streams += [_streams(c) for c in convs]
    for fs in per_file[:6]:
        ng = _pcapng_bytes(fs[:12])
        if ng is not None:
            files.append(ng)
    files.append(gzip.compress(files[0], mtime=0))
    files.append(pcap_bytes(per_file[0][:8], nano=False))
    hexdumps = [p.read_text() for p in sorted(HEXDUMP_FIXTURES.glob("*.txt"))]
    for i, style in enumerate(("wireshark", "tcpdump", "od")):
        fs = per_file[i % len(per_file)]
        hexdumps.append(hexdump_text(fs[:4], style))
    # Small streams first: cheaper to run, and mutations reach deeper into them.
    unique = sorted(set(streams), key=lambda s: len(s[0]) + len(s[1]))
    convs = sorted(set(conversations), key=lambda c: sum(len(b) for _, b in c))
    return Seeds(tuple(unique), tuple(convs), tuple(files), tuple(frames), tuple(hexdumps))
