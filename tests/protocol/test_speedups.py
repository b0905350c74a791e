"""The C speed-up of DataRow runs gives exactly what the pure-Python parser gives.

``_speedups.data_rows`` is compared with `fast_data_row` on generated and
damaged buffers, and whole parser runs (real connections, mutated, cut in
chunks, with gaps) are compared with the speed-up on and off.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.generate import parser_script
from fuzz.mutate import Mutator
from fuzz.seeds import load_seeds
from fuzz.targets import encode_script, run_parser
from pgwire_inspect.protocol import NEED_DATA, SPEEDUPS, ConnectionParser, DataRow, _framing
from pgwire_inspect.protocol._codes import MAX_MESSAGE_LENGTH
from pgwire_inspect.protocol._decode import fast_data_row

FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

if SPEEDUPS:
    from pgwire_inspect.protocol._speedups import data_rows  # type: ignore[attr-defined]

needs_speedups = pytest.mark.skipif(not SPEEDUPS and os.environ.get("CI") != "true",
                                    reason="the C speed-up is not built here")


def test_the_speedup_is_built_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert SPEEDUPS, "CI installs with a C compiler: _speedups must be built and used"


def _row(values: list[bytes | None]) -> bytes:
    body = struct.pack("!h", len(values)) + b"".join(
        struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in values)
    return b"D" + struct.pack("!i", 4 + len(body)) + body


def _reference(buf: bytes, pos: int, limit: int, offset: int) -> tuple[list[Any], int]:
    """What data_rows must return, from the pure-Python DataRow splitter."""
    rows = []
    p = pos
    while limit - p >= 7 and buf[p] == 0x44:
        (length,) = struct.unpack_from("!i", buf, p + 1)
        if not 6 <= length <= MAX_MESSAGE_LENGTH or length >= limit - p:
            break
        row = fast_data_row("B", offset + p - pos, bytes(buf[p : p + 1 + length]))
        if row is None:
            break
        rows.append(row)
        p += 1 + length
    return rows, p


VALUES = st.one_of(st.none(), st.binary(max_size=40))
ROWS = st.lists(st.lists(VALUES, max_size=6), max_size=8)


@needs_speedups
@settings(FUZZ, max_examples=400)
@given(ROWS, st.binary(max_size=12), st.lists(st.tuples(st.integers(0, 10**6),
                                                        st.integers(0, 255)), max_size=4),
       st.integers(0, 5), st.integers(0, 10**12))
def test_data_rows_matches_the_python_splitter(rows: list[list[bytes | None]], tail: bytes,
                                               damage: list[tuple[int, int]], trim: int,
                                               offset: int) -> None:
    buf = bytearray(b"".join(_row(r) for r in rows) + tail)
    for at, value in damage:  # bytes overwritten anywhere: lengths, counts, type bytes
        if buf:
            buf[at % len(buf)] = value
    for pos in (0, min(3, len(buf))):
        limit = max(pos, len(buf) - trim)  # rows cut short by the limit are left alone
        got = data_rows(buf, pos, limit, offset, "B", DataRow, 1 << 20)
        assert got == _reference(bytes(buf), pos, limit, offset)
        assert all(type(r) is DataRow for r in got[0])


@needs_speedups
def test_data_rows_stops_after_max_rows_and_checks_its_bounds() -> None:
    buf = bytearray(_row([b"1", None]) * 5)
    rows, end = data_rows(buf, 0, len(buf), 7, "B", DataRow, 2)
    assert len(rows) == 2 and end == 2 * len(_row([b"1", None]))
    assert [r.offset for r in rows] == [7, 7 + end // 2]
    for pos, limit in ((-1, 3), (4, 3), (0, len(buf) + 1)):
        with pytest.raises(ValueError):
            data_rows(buf, pos, limit, 0, "B", DataRow, 10)
    with pytest.raises(AttributeError):  # the rows stay frozen
        rows[0].values = ()  # type: ignore[misc]


def _both_ways(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    fast = run_parser(data)
    with monkeypatch.context() as m:
        m.setattr(_framing, "_c_data_rows", None)
        slow = run_parser(data)
    assert fast == slow


@needs_speedups
def test_real_connections_parse_alike_with_and_without(monkeypatch: pytest.MonkeyPatch) -> None:
    for conv in load_seeds().conversations:
        _both_ways(monkeypatch, encode_script(0, [("data", d, chunk) for d, chunk in conv]))


@needs_speedups
@settings(FUZZ, max_examples=150)
@given(st.integers(0, 2**32 - 1))
def test_damaged_connections_parse_alike_with_and_without(seed: int) -> None:
    rng = random.Random(seed)
    data = parser_script(rng, Mutator(rng), load_seeds(), floods=False)
    with pytest.MonkeyPatch.context() as m:
        fast = run_parser(data)
        m.setattr(_framing, "_c_data_rows", None)
        slow = run_parser(data)
    assert fast == slow


@needs_speedups
def test_rows_split_ahead_still_count_as_buffered() -> None:
    cp = ConnectionParser()
    p = cp.backend
    rows = _row([b"abc"]) * 3
    p.receive_data(rows + b"Z\x00\x00")
    first = p.next_message()
    assert isinstance(first, DataRow) and first.offset == 0
    assert p.buffered == len(rows) - len(_row([b"abc"])) + 3


@pytest.mark.parametrize("speedups", [True, False])
def test_next_messages_is_next_message_until_need_data(monkeypatch: pytest.MonkeyPatch,
                                                       speedups: bool) -> None:
    if not speedups:
        monkeypatch.setattr(_framing, "_c_data_rows", None)
    elif not SPEEDUPS:
        pytest.skip("the C speed-up is not built here")
    for conv in load_seeds().conversations[:40]:
        one, batch = ConnectionParser(), ConnectionParser()
        for d, chunk in conv:
            a, b = one.parser(d), batch.parser(d)
            a.receive_data(chunk)
            b.receive_data(chunk)
            singles = []
            while (m := a.next_message()) is not NEED_DATA:
                singles.append(m)
            assert b.next_messages() == singles
            assert b.next_messages() == [] and b.buffered == a.buffered
