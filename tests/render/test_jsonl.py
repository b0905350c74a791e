"""JSON lines: the fast paths write exactly what json.dumps of message_object writes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwire_inspect.capture import open_capture
from pgwire_inspect.conversation import Connection, WireMessage
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.redact import MASK, Redaction
from pgwire_inspect.render import _policy, jsonl
from pgwire_inspect.render.jsonl import JsonLinesWriter, _default, message_object
from tests.testpaths import CAPTURES


def _lines(path: Path) -> tuple[list[str], list[str]]:
    """(what the writer wrote, json.dumps of message_object), message by message."""
    out = io.StringIO()
    writer = JsonLinesWriter(out)
    expected: list[str] = []

    def emit(wm: WireMessage, conn: Connection) -> None:
        expected.append(json.dumps(message_object(wm, conn), ensure_ascii=False,
                                   default=_default) + "\n")
        writer.message(wm, conn)

    decode_frames(open_capture(path), ports=None, keep_messages=False, keep_rows=False,
                  keep_queries=False, emit=emit)
    return out.getvalue().splitlines(keepends=True), expected


@pytest.mark.parametrize("name", ["psycopg-extended.pcap", "pgbench-prepared.pcap",
                                  "asyncpg-cursor.pcap", "psycopg-copy.pcap",
                                  "notices-errors.pcap", "psql-script.pcap"])
def test_fast_lines_are_the_json_of_message_object(name: str) -> None:
    written, expected = _lines(CAPTURES / name)
    assert len(written) == len(expected) > 10
    assert written == expected
    types = {json.loads(line)["type"] for line in written}
    assert {"DataRow", "RowDescription", "ReadyForQuery"} <= types


def test_masked_columns_take_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = Redaction(show_secrets=False, column_patterns=("*name*",))
    monkeypatch.setattr(_policy, "_current", policy)
    written, expected = _lines(CAPTURES / "orm-demo-psycopg2.pcap")
    assert written == expected
    assert any(f"\"{MASK}\"" in line for line in written if "\"DataRow\"" in line)


def test_batched_lines_are_held_until_flush() -> None:
    out = io.StringIO()
    writer = JsonLinesWriter(out, batch=3)
    writer.write({"n": 1})
    writer.write({"n": 2})
    assert out.getvalue() == "" and writer.count == 2
    writer.write({"n": 3})
    assert out.getvalue() == '{"n": 1}\n{"n": 2}\n{"n": 3}\n'
    writer.write({"n": 4})
    writer.flush()
    writer.flush()
    assert out.getvalue().splitlines()[-1] == '{"n": 4}' and writer.count == 4


def test_read_writes_every_line_of_a_damaged_capture(zeek_dir: Path) -> None:
    from click.testing import CliRunner

    from pgwire_inspect.cli import cli

    path = zeek_dir / "bad-backend-message-1.pcap"
    res = CliRunner().invoke(cli, ["read", str(path), "--format", "jsonl"])
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    written, _ = _lines(path)
    assert len(lines) == len(written) > 0
    assert "MalformedMessage" in {line["type"] for line in lines}


_c_line = jsonl._c_json_data_row


@pytest.mark.skipif(_c_line is None and os.environ.get("CI") != "true",
                    reason="the C speed-up is not built here")
@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=30),
                          st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
                          st.sampled_from([b'"', b"\\", b"\x00\x1f\x7f", b"\n\r\t\x08\x0c",
                                           "é€😀\u2028".encode(), b"\xed\xa0\x80"])),
                max_size=6),
       st.one_of(st.none(), st.integers(0, 2**40)), st.integers(0, 2**40),
       st.text(max_size=8))
def test_the_c_json_line_is_json_dumps(values: list[bytes | None], frame: int | None,
                                       offset: int, client: str) -> None:
    assert _c_line is not None
    head = {"conn": 3, "client": client, "server": "127.0.0.1:5432", "dir": "B",
            "type": "DataRow", "frame": 0}
    prefix = json.dumps(head, ensure_ascii=False)[:-2]
    line = _c_line(prefix, frame, offset, 77, tuple(values))
    try:
        texts = [None if v is None else v.decode() for v in values]
    except UnicodeDecodeError:
        assert line is None  # the Python path says what is wrong
        return
    fields = {"values": texts, "raw": [None if v is None else v.hex() for v in values]}
    expected = json.dumps({**head, "frame": frame, "offset": offset, "length": 77,
                           "fields": fields}, ensure_ascii=False) + "\n"
    assert line == expected


def _both_ways(frames: list[Any]) -> tuple[str, str]:
    """The writer's output with emit only, and with emit_rows for runs of DataRows."""
    outputs = []
    for batched in (False, True):
        out = io.StringIO()
        writer = JsonLinesWriter(out, batch=7)
        decode_frames(frames, ports=None, keep_messages=False, keep_rows=False,
                      keep_queries=False, emit=writer.message,
                      emit_rows=writer.rows if batched else None)
        writer.flush()
        outputs.append(out.getvalue())
    return outputs[0], outputs[1]


@pytest.mark.parametrize("name", ["psycopg-extended.pcap", "asyncpg-cursor.pcap",
                                  "psycopg-copy.pcap", "notices-errors.pcap"])
def test_runs_of_rows_write_the_same_lines(name: str) -> None:
    one_by_one, batched = _both_ways(list(open_capture(CAPTURES / name)))
    assert batched == one_by_one and '"DataRow"' in batched


def test_runs_of_rows_of_a_connection_still_being_proven(zeek_dir: Path) -> None:
    # Caught mid-stream on another port: its first messages wait in the router
    # until they prove it is PostgreSQL; then runs of rows skip the router.
    frames = list(open_capture(zeek_dir / "psql-aws-ssl-disable-15432.pcap"))[4:]
    one_by_one, batched = _both_ways(frames)
    assert batched == one_by_one and '"DataRow"' in batched


def test_runs_of_masked_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "_current", Redaction(column_patterns=("*name*",)))
    one_by_one, batched = _both_ways(list(open_capture(CAPTURES / "orm-demo-psycopg2.pcap")))
    assert batched == one_by_one and f'"{MASK}"' in batched
