"""Fuzz the protocol parser on a small, fixed budget (every test run).

Inputs are parser scripts (bytes for each direction, gaps, drains, ends;
see ``fuzz/targets.py``): random bytes, and real connections from
``captures/`` and the Zeek captures, mutated, cut into chunks and holed
with gaps. Every run checks what the parser documents: no exception,
messages in order and covering every byte fed or missing exactly once,
message bytes equal to the stream's bytes, field spans covering each
message, ``buffered`` bounded by the bytes fed, NEED_DATA at the end.
The examples are derandomized, so a run is repeatable; ``fuzz/run.py``
runs the same targets for millions of inputs.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from fuzz.generate import chunking_input, parser_script
from fuzz.mutate import Mutator
from fuzz.seeds import load_seeds
from fuzz.targets import InvariantError, deadline, encode_script, run_chunking, run_parser
from pgwire_inspect.protocol import ConnectionParser, DataRow, MalformedMessage, ReadyForQuery

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = st.integers(min_value=0, max_value=2**32 - 1)


def _run(fn: object, data: bytes) -> None:
    if len(data) <= 4096:
        note(f"input: {data.hex()}")
    with deadline(20):
        fn(data)  # type: ignore[operator]


def test_the_seed_connections_pass_every_check() -> None:
    """Real connections, replayed chunk by chunk in capture order, break no promise."""
    seeds = load_seeds()
    assert len(seeds.conversations) >= 20
    names: set[str] = set()
    for conv in seeds.conversations:
        msgs = run_parser(encode_script(0, [("data", d, chunk) for d, chunk in conv]))
        names |= {type(m).__name__ for m in msgs["F"] + msgs["B"]}
    assert {"StartupMessage", "Query", "Parse", "ReadyForQuery", "RowDescription", "DataRow",
            "SSLRequest", "SSLResponse", "MalformedMessage"} <= names


def test_a_gap_inside_a_message_is_one_malformed_stretch() -> None:
    rfq = b"Z\x00\x00\x00\x05I"
    msgs = run_parser(encode_script(0, [("data", "B", rfq + rfq[:3]), ("gap", "B", 3),
                                         ("data", "B", rfq)]))["B"]
    assert isinstance(msgs[0], ReadyForQuery) and msgs[0].offset == 0
    assert isinstance(msgs[1], MalformedMessage) and (msgs[1].offset, msgs[1].end) == (6, 12)
    assert isinstance(msgs[2], ReadyForQuery) and msgs[2].offset == 12


@settings(FUZZ, max_examples=300)
@given(st.binary(max_size=1500))
def test_random_scripts(data: bytes) -> None:
    _run(run_parser, data)


@settings(FUZZ, max_examples=150)
@given(st.lists(st.sampled_from([
    b"Z\x00\x00\x00\x05I", b"D\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x00",
    b"C\x00\x00\x00\x0dSELECT 1\x00", b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    b"\x00\x00\x00\x08", b"S", b"N", b"\x16\x03\x01", b"R\x00\x00\x00\x08\x00\x00\x00\x00",
    b"T\x00\x00\x00\x06\x00\x00", b"\xff\xff\xff\xff", b"\x00", b"d\x00\x00\x00\x04",
]), max_size=40), st.integers(0, 7), st.lists(st.integers(1, 40), min_size=1, max_size=4))
def test_scripts_of_message_pieces(pieces: list[bytes], flags: int, sizes: list[int]) -> None:
    """Well-formed and broken message pieces, both directions, odd chunk sizes and gaps."""
    ops: list[tuple[str, str, bytes | int]] = []
    for i, piece in enumerate(pieces):
        d = "F" if sizes[i % len(sizes)] % 3 == 0 else "B"
        if sizes[i % len(sizes)] == 40:
            ops.append(("gap", d, len(piece)))
        else:
            ops.append(("data", d, piece))
    _run(run_parser, encode_script(flags, ops))


@settings(FUZZ, max_examples=300)
@given(SEEDS)
def test_mutated_real_connections(seed: int) -> None:
    rng = random.Random(seed)
    data = parser_script(rng, Mutator(rng), load_seeds(), floods=False)
    _run(run_parser, data)


@settings(FUZZ, max_examples=120)
@given(SEEDS)
def test_whole_or_chunked_decode_alike(seed: int) -> None:
    rng = random.Random(seed)
    _run(run_chunking, chunking_input(rng, Mutator(rng), load_seeds()))


@settings(FUZZ, max_examples=60)
@given(st.integers(1, 200), st.integers(0, 60), st.integers(1, 1 << 20))
def test_gap_inside_a_row_stream(rows: int, cut: int, gap: int) -> None:
    """A result stream with a hole: rows before it come back whole, decoding resumes after it."""
    row = b"D" + struct.pack("!ih", 4 + 2 + 4 + 3, 1) + struct.pack("!i", 3) + b"abc"
    stream = row * rows
    at = min(len(stream), cut * 7)
    ops: list[tuple[str, str, bytes | int]] = [("data", "B", stream[:at]), ("gap", "B", gap),
                                               ("data", "B", stream)]
    msgs = run_parser(encode_script(0, ops))["B"]
    whole_before = at // len(row)
    assert all(isinstance(m, DataRow) for m in msgs[:whole_before])
    after = [m for m in msgs if isinstance(m, DataRow) and m.offset >= at + gap]
    # Decoding finds its way back within the first two rows after the hole.
    assert len(after) >= rows - 2


def test_the_harness_catches_a_message_out_of_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks can fail: bytes fed to a parser behind the harness's back are caught."""
    from fuzz import scripts

    class Sneaky(ConnectionParser):
        def __init__(self) -> None:
            super().__init__()
            self.backend.receive_data(b"Z\x00\x00\x00\x05I")

    monkeypatch.setattr(scripts, "ConnectionParser", Sneaky)
    with pytest.raises(InvariantError, match="only 6 stream bytes were fed"):
        run_parser(encode_script(0, [("data", "B", b"Z\x00\x00\x00\x05I")]))
