"""Parser scripts and the parser targets: ``run_parser`` and ``run_chunking``.

A parser script is bytes that say what to do with a `ConnectionParser`:
give bytes to either direction, report a gap, drain, end a direction (see
`decode_script`). Fuzzers mutate scripts as bytes; the generators build
them from real connections with `encode_script`.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field

from pgwire_inspect.protocol import (
    NEED_DATA,
    ConnectionParser,
    MalformedMessage,
    Message,
    StreamParser,
)

from .checks import InvariantError, check

__all__ = [
    "MIDSTREAM_B",
    "MIDSTREAM_F",
    "NO_AUTO_DRAIN",
    "Op",
    "Stream",
    "check_message",
    "decode_script",
    "encode_script",
    "run_chunking",
    "run_parser",
]

#: One script operation: ("data", direction, bytes), ("gap", direction, length),
#: ("drain", direction, 0) or ("finish", direction, 0).
Op = tuple[str, str, "bytes | int"]

#: Script flags (first byte): start the frontend / backend parser mid-stream;
#: do not drain after each data operation.
MIDSTREAM_F, MIDSTREAM_B, NO_AUTO_DRAIN = 1, 2, 4
_MAX_DATA_OP = 1 << 14


def encode_script(flags: int, ops: list[Op]) -> bytes:
    """The bytes of a parser script (the inverse of `decode_script`).

    Long data is split into several data operations; a gap too long for
    one operation becomes a few (the parser adds consecutive gaps up).
    """
    out = bytearray([flags & 0xFF])
    for kind, d, arg in ops:
        dbit = 0x80 if d == "F" else 0
        if kind == "data":
            assert isinstance(arg, bytes)
            for i in range(0, len(arg), _MAX_DATA_OP):
                chunk = arg[i : i + _MAX_DATA_OP]
                n = len(chunk) - 1
                out += bytes([dbit | (n >> 8), n & 0xFF]) + chunk
        elif kind == "gap":
            assert isinstance(arg, int) and arg > 0
            left = arg
            while left > 0:
                shift = max(0, left.bit_length() - 16)
                shift = min(shift, 31)
                m = min(left >> shift, 1 << 16)
                out += bytes([dbit | 0x40 | shift]) + (m - 1).to_bytes(2, "big")
                left -= m << shift
        elif kind == "drain":
            out.append(dbit | 0x60)
        elif kind == "finish":
            out.append(dbit | 0x70)
        else:
            raise ValueError(f"unknown script operation {kind!r}")
    return bytes(out)


def decode_script(data: bytes) -> tuple[int, list[Op]]:
    """Read a parser script: a flags byte, then operations.

    Each operation starts with a byte ``h``: bit 7 picks the direction
    (1 frontend, 0 backend); ``h & 0x40 == 0``: data, ``((h & 0x3f) << 8 |
    next byte) + 1`` bytes follow; ``h & 0x60 == 0x40``: a gap of
    ``(next two bytes + 1) << (h & 0x1f)`` bytes; ``h & 0x70 == 0x60``:
    drain; ``h & 0x70 == 0x70``: end of that direction. A truncated last
    operation is dropped (data is cut to what is there).

    Returns:
        (flags, operations).
    """
    if not data:
        return 0, []
    flags = data[0]
    ops: list[Op] = []
    pos, n = 1, len(data)
    while pos < n:
        h = data[pos]
        d = "F" if h & 0x80 else "B"
        if not h & 0x40:
            if pos + 1 >= n:
                break
            length = (((h & 0x3F) << 8) | data[pos + 1]) + 1
            chunk = data[pos + 2 : pos + 2 + length]
            pos += 2 + length
            if chunk:
                ops.append(("data", d, chunk))
        elif not h & 0x20:
            if pos + 2 >= n:
                break
            length = (int.from_bytes(data[pos + 1 : pos + 3], "big") + 1) << (h & 0x1F)
            ops.append(("gap", d, length))
            pos += 3
        else:
            ops.append(("finish" if h & 0x10 else "drain", d, 0))
            pos += 1
    return flags, ops


@dataclass
class Stream:
    """What one direction was fed, and what came back so far.

    Attributes:
        parser: the direction's parser.
        pieces, starts: the stream as fed: (start, end, bytes or None for a
            gap) in stream offsets, and the starts alone (for bisection).
        fed, gap_bytes: bytes fed and bytes reported missing.
        next_offset: where the next message must start.
        returned, malformed: messages returned, and how many were malformed.
        finished: the direction has ended.
    """

    parser: StreamParser
    pieces: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    fed: int = 0
    gap_bytes: int = 0
    next_offset: int = 0
    returned: int = 0
    malformed: int = 0
    finished: bool = False
    #: Messages deeply checked, by class name (the first few of each are).
    deep: dict[str, int] = field(default_factory=dict)
    #: The messages returned, when asked to keep them.
    kept: list[Message] | None = None

    @property
    def end(self) -> int:
        """Stream offset just past the last byte fed or reported missing."""
        return self.fed + self.gap_bytes

    def add(self, data: bytes | None, length: int) -> None:
        """Record ``length`` more stream bytes: ``data``, or None for a gap."""
        self.starts.append(self.end)
        self.pieces.append((self.end, self.end + length, data))
        if data is None:
            self.gap_bytes += length
        else:
            self.fed += length

    def bytes_at(self, start: int, end: int) -> bytes | None:
        """The stream's bytes in [start, end), or None if a gap or the unfed end is there."""
        i = bisect.bisect_right(self.starts, start) - 1
        out = bytearray()
        pos = start
        while pos < end:
            if i < 0 or i >= len(self.pieces):
                return None
            p_start, p_end, data = self.pieces[i]
            if data is None:
                return None
            take = min(end, p_end)
            out += data[pos - p_start : take - p_start]
            pos = take
            i += 1
        return bytes(out)


def check_message(msg: object, d: str, deep: bool = True) -> Message:
    """Check what every message promises about itself; returns it typed.

    With ``deep``, also its fields (JSON-ready), repr and field spans (a
    second decode: the costly part).
    """
    check(isinstance(msg, Message), f"next_message returned {type(msg).__name__}")
    assert isinstance(msg, Message)
    check(msg.direction == d, f"{msg.name} of direction {msg.direction!r} from the {d} parser")
    check(msg.length > 0, f"{msg.name} at {msg.offset} covers {msg.length} bytes")
    check(msg.end == msg.offset + msg.length, f"{msg.name}.end is not offset + length")
    if not deep:
        return msg
    fields = msg.fields()
    json.dumps(fields)  # documented: JSON-ready values
    repr(msg)
    if isinstance(msg, MalformedMessage):
        check(len(msg.raw) <= min(msg.skipped, 4096),
               f"MalformedMessage at {msg.offset} keeps {len(msg.raw)} bytes of {msg.skipped}")
        check(msg.offset <= msg.error_offset <= msg.end,
               f"MalformedMessage error_offset {msg.error_offset} outside "
               f"[{msg.offset}, {msg.end}]")
        spans = msg.spans()
        check(len(spans) == 1 and spans[0].end == len(msg.raw), "malformed spans")
    else:
        spans = msg.spans()
        pos = 0
        for s in spans:
            check(s.start == pos and s.end >= s.start,
                   f"{msg.name} span {s.name} [{s.start}, {s.end}) does not follow byte {pos}")
            pos = s.end
        check(pos == len(msg.raw),
               f"{msg.name} spans end at byte {pos} of {len(msg.raw)}")
    return msg


def _drain(s: Stream, d: str) -> None:
    p = s.parser
    while True:
        msg = p.next_message()
        if s.kept is not None and msg is not NEED_DATA:
            s.kept.append(msg)  # type: ignore[arg-type]
        check(0 <= p.buffered <= s.fed,
               f"{d} parser buffers {p.buffered} bytes after {s.fed} were fed")
        if msg is NEED_DATA:
            return
        name = type(msg).__name__
        seen = s.deep.get(name, 0)
        s.deep[name] = seen + 1
        m = check_message(msg, d, deep=seen < 3 or name == "MalformedMessage")
        check(m.offset == s.next_offset,
               f"{m.name} at offset {m.offset}, the previous message ended at {s.next_offset}")
        s.next_offset = m.end
        check(s.next_offset <= s.end,
               f"{m.name} ends at {m.end} but only {s.end} stream bytes were fed")
        s.returned += 1
        if isinstance(m, MalformedMessage):
            s.malformed += 1
        else:
            expected = s.bytes_at(m.offset, m.end)
            check(expected == m.raw,
                   f"{m.name} at {m.offset}: its bytes are not the stream's bytes there")


def run_parser(data: bytes) -> dict[str, list[Message]]:
    """Run a parser script (see `decode_script`) and check every message and the end.

    Checks: no exception; each message is where the previous one ended,
    covers at least one byte, and (unless malformed) holds exactly the
    stream's bytes at its offset; field spans cover each message once;
    ``buffered`` never exceeds the bytes fed; after both ends, messages,
    malformed stretches and gaps cover every byte fed exactly once (with
    TLS/GSSAPI, encrypted bytes count too), nothing stays buffered, the
    counters agree and ``next_message`` keeps returning NEED_DATA.

    Returns:
        The messages of each direction ("F", "B"), in order.

    Raises:
        InvariantError: a check failed.
    """
    flags, ops = decode_script(data)
    cp = ConnectionParser()
    streams = {d: Stream(cp.parser(d), kept=[]) for d in "FB"}
    if flags & MIDSTREAM_F:
        cp.frontend.start_midstream()
    if flags & MIDSTREAM_B:
        cp.backend.start_midstream()
    auto = not flags & NO_AUTO_DRAIN
    for kind, d, arg in ops:
        s = streams[d]
        if s.finished:
            continue
        if kind == "data":
            assert isinstance(arg, bytes)
            s.add(arg, len(arg))
            s.parser.receive_data(arg)
            if auto:
                _drain(s, d)
        elif kind == "gap":
            assert isinstance(arg, int)
            s.add(None, arg)
            s.parser.receive_gap(arg)
        elif kind == "finish":
            s.finished = True
            s.parser.finish()
            _drain(s, d)
        else:
            _drain(s, d)
    for d in "FB":
        if not streams[d].finished:
            streams[d].finished = True
            streams[d].parser.finish()
        _drain(streams[d], d)
    for d in "FB":
        _drain(streams[d], d)
        s, p = streams[d], streams[d].parser
        check(p.next_message() is NEED_DATA, f"{d}: a message after the final NEED_DATA")
        check(p.buffered == 0, f"{d}: {p.buffered} bytes still buffered after the end")
        check(p.messages + p.malformed == s.returned and p.malformed == s.malformed,
               f"{d}: counters say {p.messages} + {p.malformed}, {s.returned} returned")
        covered = s.next_offset
        if d in cp.state.encrypted_from:
            total = covered + cp.state.encrypted_bytes[d]
            check(s.fed <= total <= s.end,
                   f"{d}: {covered} bytes in messages and {cp.state.encrypted_bytes[d]} "
                   f"encrypted, but {s.fed} fed and {s.gap_bytes} missing")
        else:
            check(covered == s.end,
                   f"{d}: messages cover {covered} bytes, {s.fed} were fed and "
                   f"{s.gap_bytes} missing")
    return {d: streams[d].kept or [] for d in "FB"}


def _split(data: bytes, sizes: list[int]) -> list[bytes]:
    out = []
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out.append(data[pos : pos + n])
        pos += n
        i += 1
    return out


def _outline(msgs: list[Message]) -> list[tuple[str, int, int, bytes]]:
    """Messages as (kind, offset, end, raw); neighbouring malformed stretches merged."""
    out: list[tuple[str, int, int, bytes]] = []
    for m in msgs:
        if isinstance(m, MalformedMessage):
            if out and out[-1][0] == "malformed" and out[-1][2] == m.offset:
                out[-1] = ("malformed", out[-1][1], m.end, b"")
            else:
                out.append(("malformed", m.offset, m.end, b""))
        else:
            out.append((m.name, m.offset, m.end, m.raw))
    return out


def run_chunking(data: bytes) -> None:
    """A parser script run as it is and with its data cut in smaller chunks: same messages.

    The input is a parser script (see `decode_script`); the mid-stream
    flags are ignored (where a capture that starts mid-connection finds
    its first boundary may depend on how much it sees at once). Bits 3-7
    of the flags byte pick the chunk sizes of the second run, which cuts
    every data operation in pieces, each drained at once; the order of
    the two directions stays as it is. Malformed stretches may be reported
    in other pieces, but must cover the same bytes.

    Raises:
        InvariantError: the two runs differ, or a check of `run_parser` failed.
    """
    flags, ops = decode_script(data)
    k = flags >> 3
    sizes = [1 + (k & 7), 1 + (k >> 3) * 97, 3, 1 + k * 13]
    flags &= NO_AUTO_DRAIN
    cut: list[Op] = []
    for kind, d, arg in ops:
        if kind == "data":
            assert isinstance(arg, bytes)
            cut += [("data", d, c) for c in _split(arg, sizes)]
        else:
            cut.append((kind, d, arg))
    whole = run_parser(encode_script(flags, ops))
    chunked = run_parser(encode_script(flags, cut))
    for d in "FB":
        a, c = _outline(whole[d]), _outline(chunked[d])
        if a != c:
            i = next(i for i in range(max(len(a), len(c)))
                     if i >= len(a) or i >= len(c) or a[i] != c[i])
            raise InvariantError(
                f"{d}: as fed and cut smaller differ at message {i}: "
                f"{a[i][:3] if i < len(a) else None} vs {c[i][:3] if i < len(c) else None}")
