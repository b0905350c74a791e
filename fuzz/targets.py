"""Fuzz targets: fuzzer bytes in, an exception out when an invariant breaks.

Each ``run_*`` function takes one input as bytes (the form atheris, the
mutation loop and the regression tests all store), drives one decoder
with it and checks what the decoder documents. It returns normally when
all is well; an `InvariantError` says which promise was broken; any other
exception escaped from the decoder (a crash).

Targets (``TARGETS``):

- ``parser``: a script of operations (bytes for either direction, gaps,
  drains, ends) run on a `ConnectionParser`; see `fuzz.scripts`.
- ``chunking``: the same script with its data cut in smaller chunks must
  give the same messages.
- ``capture``: a capture file for `open_capture`, read from memory or a
  path, iterated once or twice; only `CaptureError` may escape.
- ``frame``: one frame for `decode_frame` and `dissect_headers`.
- ``pipeline``: a capture file through `decode_frames`, end to end; no
  exception at all, and every message's bytes are the stream's bytes.
- ``hexdump``: text for `read_hexdump` and `looks_like_hexdump`.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable

from pgwire_inspect import decode as _decode
from pgwire_inspect.capture import (
    LINKTYPE_NAMES,
    Frame,
    TcpSegment,
    decode_frame,
    dissect_headers,
    looks_like_hexdump,
    open_capture,
    read_hexdump,
    tcp_flag_names,
)
from pgwire_inspect.capture.files import MAX_RECORD_LEN
from pgwire_inspect.decode import DEFAULT_PORTS, decode_frames
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.protocol import ConnectionParser, DataRow, MalformedMessage
from pgwire_inspect.reassembly import Event, Reassembler, StreamData, StreamGap

from .checks import Hang, InvariantError, check, deadline
from .scripts import (
    MIDSTREAM_B,
    MIDSTREAM_F,
    NO_AUTO_DRAIN,
    Op,
    Stream,
    check_message,
    decode_script,
    encode_script,
    run_chunking,
    run_parser,
)

__all__ = [
    "KNOWN_LINKTYPES",
    "MIDSTREAM_B",
    "MIDSTREAM_F",
    "NO_AUTO_DRAIN",
    "TARGETS",
    "Hang",
    "InvariantError",
    "Op",
    "deadline",
    "decode_script",
    "encode_script",
    "run_capture",
    "run_chunking",
    "run_frame",
    "run_hexdump",
    "run_parser",
    "run_pipeline",
]

KNOWN_LINKTYPES = tuple(sorted(LINKTYPE_NAMES))
_TMPDIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


# --------------------------------------------------------------------------
# capture files, frames, hex dumps
# --------------------------------------------------------------------------


def _check_frames(frames: list[Frame]) -> None:
    for i, f in enumerate(frames, 1):
        check(isinstance(f, Frame) and f.no == i, f"frame {i} numbered {f.no}")
        check(isinstance(f.data, bytes) and len(f.data) <= MAX_RECORD_LEN,
               f"frame {i} holds {len(f.data)} bytes")
        check(isinstance(f.ts, float), f"frame {i} timestamp {f.ts!r}")
        check(isinstance(f.linktype, int) and 0 <= f.linktype <= 0xFFFF,
               f"frame {i} link type {f.linktype!r}")
        check(isinstance(f.wirelen, int), f"frame {i} wirelen {f.wirelen!r}")


def run_capture(data: bytes) -> None:
    """Open and read a capture file; only `CaptureError` may escape, and only from there.

    Byte 0 picks how: bit 0 from a file path (else from memory), bit 1
    read it twice (the second pass must give the same frames). The rest
    of the input is the file.

    Raises:
        InvariantError: frames misnumbered or bigger than a record may be,
            problems not one-line strings, or two passes that differ.
    """
    mode = data[0] if data else 0
    body = data[1:]
    path = None
    if mode & 1:
        fd, path = tempfile.mkstemp(suffix=".pcap", dir=_TMPDIR)
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
    try:
        try:
            cap = open_capture(path if path is not None else io.BytesIO(body))
        except CaptureError:
            return
        with cap:
            try:
                frames = list(cap)
            except CaptureError:
                return
            _check_frames(frames)
            check(all(isinstance(p, str) and "\n" not in p for p in cap.problems),
                   f"problems {cap.problems!r}")
            check(cap.frames_read == len(frames), "frames_read")
            if mode & 2:
                try:
                    again = list(cap)
                except CaptureError:
                    return
                check(again == frames, "a second pass read other frames")
    finally:
        if path is not None:
            os.unlink(path)


def _check_segment(frame: Frame, seg: TcpSegment) -> None:
    data = frame.data
    p = seg.payload_offset
    check(p >= 0 and data[p : p + len(seg.payload)] == seg.payload,
           f"payload at {p} is not the frame's bytes there")
    check(p <= len(data) or not seg.payload, f"payload at {p}, past the frame's end")
    check(seg.missing >= 0, f"missing = {seg.missing}")
    check(0 <= seg.sport <= 0xFFFF and 0 <= seg.dport <= 0xFFFF, "ports")
    check(0 <= seg.seq <= 0xFFFFFFFF and 0 <= seg.ack <= 0xFFFFFFFF, "seq/ack")
    check(seg.frame == frame.no and seg.ts == frame.ts, "frame number / timestamp")
    tcp_flag_names(seg.flags)
    repr(seg)


def run_frame(data: bytes) -> None:
    """Decode one frame: None, a `TcpSegment` or `CaptureError` (unknown link type only).

    Bytes 0-1 pick the link type (mostly one of those decoded), byte 2 adds
    to ``wirelen``; the rest is the frame. `dissect_headers` must agree:
    fields in byte order inside the frame, and TCP fields when
    `decode_frame` found a segment.

    Raises:
        InvariantError: a check failed.
    """
    if len(data) < 3:
        return
    sel = int.from_bytes(data[:2], "big")
    linktype = KNOWN_LINKTYPES[sel % len(KNOWN_LINKTYPES)] if sel < 0xF000 else sel & 0x1FF
    body = data[3:]
    frame = Frame(7, 1.5, linktype, body, len(body) + data[2])
    known = linktype in LINKTYPE_NAMES
    try:
        seg = decode_frame(frame)
    except CaptureError:
        check(not known, f"decode_frame raised CaptureError for link type {linktype}")
        return
    check(known, f"decode_frame decoded unknown link type {linktype}")
    check(seg is None or isinstance(seg, TcpSegment), f"decode_frame returned {seg!r}")
    if seg is not None:
        _check_segment(frame, seg)
    fields = dissect_headers(frame)
    pos = 0
    for f in fields:
        check(pos <= f.start < f.end <= len(body),
               f"header field {f.name} [{f.start}, {f.end}) after byte {pos}")
        pos = f.end
    if seg is not None:
        check(any(f.layer == "tcp" for f in fields),
               "decode_frame found a TCP segment, dissect_headers no TCP header")


def run_hexdump(data: bytes) -> None:
    """Read hex dump text: frames or `CaptureError`, and `looks_like_hexdump` a bool.

    Byte 0 bit 0 gives the link type (Ethernet) instead of guessing it; the
    rest is the text (UTF-8, bad bytes replaced).

    Raises:
        InvariantError: a check failed.
    """
    mode = data[0] if data else 0
    body = data[1:]
    check(looks_like_hexdump(body) in (True, False), "looks_like_hexdump")
    text = body.decode("utf-8", "replace")
    try:
        frames = read_hexdump(text, linktype=1 if mode & 1 else None)
    except CaptureError:
        return
    check(len(frames) > 0, "read_hexdump returned no frames without raising")
    for i, f in enumerate(frames, 1):
        check(f.no == i and f.wirelen == len(f.data), f"frame {i}: no {f.no}, wirelen")
        check(f.linktype in LINKTYPE_NAMES, f"frame {i}: link type {f.linktype}")
        decode_frame(f)


# --------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------


def _recording(log: list[object]) -> type[Reassembler]:
    """A `Reassembler` that also appends every event it returns to ``log``."""

    class Recording(Reassembler):
        def feed(self, seg: TcpSegment) -> list[Event]:
            events = super().feed(seg)
            log.extend(events)
            return events

        def finish(self) -> list[Event]:
            events = super().finish()
            log.extend(events)
            return events

    return Recording


def _streams(events: list[object]) -> dict[tuple[int, str], Stream]:
    """Each connection's streams, (connection, direction) -> bytes and gaps, from events."""
    out: dict[tuple[int, str], Stream] = {}
    dummy = ConnectionParser().frontend
    for ev in events:
        if isinstance(ev, StreamData | StreamGap):
            s = out.setdefault((ev.conn, ev.direction), Stream(dummy))
            check(ev.offset == s.end, f"reassembly: event at {ev.offset}, stream at {s.end}")
            s.add(ev.data if isinstance(ev, StreamData) else None,
                  len(ev.data) if isinstance(ev, StreamData) else ev.length)
    return out


def run_pipeline(data: bytes) -> None:
    """Decode a capture file end to end with `decode_frames`; nothing may raise.

    Byte 0: bit 0 looks for PostgreSQL on every port (else port 5432), bit
    1 keeps frames (and locates them). Then every message of every
    connection must hold the stream's bytes at its offset, follow the
    previous one, and (unless encrypted) the messages and gaps must cover
    the whole stream; every DataRow is decoded to values.

    Raises:
        InvariantError: a check failed.
    """
    mode = data[0] if data else 0
    try:
        frames = list(open_capture(io.BytesIO(data[1:])))
    except CaptureError:
        return
    ports = None if mode & 1 else DEFAULT_PORTS
    # The streams exactly as the pipeline's reassembly delivered them.
    log: list[object] = []
    real = _decode.Reassembler
    _decode.Reassembler = _recording(log)  # type: ignore[misc]
    try:
        dec = decode_frames(frames, ports=ports, keep_frames=bool(mode & 2))
    finally:
        _decode.Reassembler = real  # type: ignore[misc]
    ref = _streams(log)
    for conn in dec.connections:
        conn.verdict  # noqa: B018 - computed property, must not raise
        for d in "FB":
            msgs = [wm.message for wm in conn.messages if wm.direction == d]
            stream = ref.get((conn.key, d))
            pos = 0
            for m in msgs:
                check_message(m, d)
                check(m.offset == pos, f"conn {conn.key} {d}: {m.name} at {m.offset}, "
                       f"the previous message ended at {pos}")
                pos = m.end
                if not isinstance(m, MalformedMessage):
                    check(stream is not None and stream.bytes_at(m.offset, m.end) == m.raw,
                           f"conn {conn.key} {d}: {m.name} at {m.offset} does not hold the "
                           f"stream's bytes there")
            if stream is not None and d not in conn.state.encrypted_from and d in conn.ended:
                check(pos == stream.end, f"conn {conn.key} {d}: messages cover {pos} bytes "
                       f"of {stream.end}")
        for wm in conn.messages:
            if isinstance(wm.message, DataRow):
                result = conn.result_of(wm)
                if result is not None:
                    conn.decode_row(result, wm)
    for f in dec.kept_frames:
        dec.location(f.no)


#: Target name -> function taking one input.
TARGETS: dict[str, Callable[[bytes], object]] = {
    "parser": run_parser,
    "chunking": run_chunking,
    "capture": run_capture,
    "frame": run_frame,
    "pipeline": run_pipeline,
    "hexdump": run_hexdump,
}
