"""Fuzz the capture readers and the whole pipeline on a small, fixed budget.

Seeds are the real pcaps of ``captures/`` and of the Zeek captures (and
pcapng and gzip copies of some, built in memory). What must hold:

- `open_capture` and iterating it raise nothing but `CaptureError`, and
  the frames are numbered and no bigger than a record may be;
- `decode_frame` returns None or a `TcpSegment` whose payload is the
  frame's bytes, or raises `CaptureError` for an unknown link type only;
  `dissect_headers` names fields in byte order inside the frame;
- `decode_frames` raises nothing at all on damaged captures (frames lost,
  duplicated, reordered, cut short, edited), and every message it decodes
  holds the stream's bytes at its offset;
- `read_hexdump` returns frames or raises `CaptureError`.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.generate import capture_file, frame_input, hexdump_input, pipeline_file
from fuzz.mutate import Mutator
from fuzz.seeds import load_seeds
from fuzz.targets import (
    KNOWN_LINKTYPES,
    InvariantError,
    deadline,
    run_capture,
    run_frame,
    run_hexdump,
    run_pipeline,
)
from pgwire_inspect.capture import Frame, open_capture
from pgwire_inspect.decode import Decoded

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
MAGICS = [b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
          b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"]


def _generated(make: object, seed: int) -> bytes:
    rng = random.Random(seed)
    return make(rng, Mutator(rng), load_seeds())  # type: ignore[operator]


def test_the_seed_files_are_read_whole() -> None:
    seeds = load_seeds()
    formats = set()
    for raw in seeds.files:
        cap = open_capture(io.BytesIO(raw))
        frames = list(cap)
        assert frames and not cap.problems
        formats.add((cap.format, cap.compressed))
        run_capture(b"\x03" + raw)
        run_pipeline(b"\x02" + raw)
    assert {("pcap", False), ("pcapng", False), ("pcap", True)} <= formats


def test_the_pipeline_check_catches_a_missing_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The end-to-end check can fail: a decoder that loses each connection's first message."""
    from fuzz import targets

    real = targets.decode_frames

    def lossy(frames: Iterable[Frame], **kw: Any) -> Decoded:
        dec = real(frames, **kw)
        for conn in dec.connections:
            conn.messages = conn.messages[1:]
        return dec

    monkeypatch.setattr(targets, "decode_frames", lossy)
    with pytest.raises(InvariantError, match="the previous message ended at 0"):
        run_pipeline(b"\x00" + load_seeds().files[0])


@settings(FUZZ, max_examples=250)
@given(SEEDS)
def test_mutated_capture_files(seed: int) -> None:
    data = _generated(capture_file, seed)
    with deadline(20):
        run_capture(data)


@settings(FUZZ, max_examples=150)
@given(st.integers(0, 3), st.sampled_from(MAGICS), st.binary(max_size=600))
def test_random_bytes_after_a_capture_magic(mode: int, magic: bytes, rest: bytes) -> None:
    with deadline(20):
        run_capture(bytes([mode]) + magic + rest)


@settings(FUZZ, max_examples=500)
@given(SEEDS)
def test_mutated_frames(seed: int) -> None:
    run_frame(_generated(frame_input, seed))


@settings(FUZZ, max_examples=300)
@given(st.sampled_from(KNOWN_LINKTYPES), st.integers(0, 255), st.binary(max_size=120))
def test_random_frames(linktype: int, extra: int, body: bytes) -> None:
    sel = KNOWN_LINKTYPES.index(linktype)
    run_frame(sel.to_bytes(2, "big") + bytes([extra]) + body)


@settings(FUZZ, max_examples=120)
@given(SEEDS)
def test_damaged_captures_end_to_end(seed: int) -> None:
    data = _generated(pipeline_file, seed)
    with deadline(20):
        run_pipeline(data)


@settings(FUZZ, max_examples=300)
@given(SEEDS)
def test_mutated_hexdumps(seed: int) -> None:
    with deadline(20):
        run_hexdump(_generated(hexdump_input, seed))


@settings(FUZZ, max_examples=200)
@given(st.integers(0, 1), st.text(alphabet="0123456789abcdefx: \t\n*|.-", max_size=400))
def test_hexdump_like_text(mode: int, text: str) -> None:
    run_hexdump(bytes([mode]) + text.encode())
