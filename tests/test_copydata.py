"""COPY text and CSV data as rows; replication CopyData names."""

from __future__ import annotations

import psycopg
import pytest

from pgwire_inspect.copydata import copy_rows, is_csv_copy, replication_message


def test_text_format_nulls_escapes_and_rows_across_chunks() -> None:
    chunks = [b"1\tDemo\t\\N\n2\ta\\tb\\nc", b"\t\\\\x\\101\\x41\n"]
    assert copy_rows(chunks, csv_format=False) == [
        ["1", "Demo", None], ["2", "a\tb\nc", "\\xAA"]]


def test_text_format_end_marker_and_limit() -> None:
    data = [b"1\n2\n3\n\\.\n"]
    assert copy_rows(data, csv_format=False) == [["1"], ["2"], ["3"]]
    assert copy_rows(data, csv_format=False, limit=2) == [["1"], ["2"]]


def test_csv_format() -> None:
    data = [b'1,"a, b",\n2,"say ""hi""",x\n']
    assert copy_rows(data, csv_format=True) == [["1", "a, b", None], ["2", 'say "hi"', "x"]]


def test_csv_detection() -> None:
    assert is_csv_copy("COPY t TO STDOUT WITH (FORMAT csv, HEADER)")
    assert is_csv_copy("copy t from stdin csv")
    assert not is_csv_copy("COPY t TO STDOUT")
    assert not is_csv_copy(None)


def test_replication_names() -> None:
    assert replication_message(b"w\x00\x00") == "XLogData"
    assert replication_message(b"k") == "Primary keepalive message"
    assert replication_message(b"r") == "Standby status update"
    assert replication_message(b"") is None


def test_text_rows_equal_what_the_server_copies(pg_dsn: str) -> None:
    """Real COPY TO STDOUT bytes from the server split into the values it holds."""
    values = [(1, "plain", None), (2, "tab\there", "new\nline"), (3, "back\\slash", "é")]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("create temp table copy_t (a int, b text, c text)")
        with conn.cursor() as cur:
            cur.executemany("insert into copy_t values (%s, %s, %s)", values)
            for fmt, csv_format in (("text", False), ("csv", True)):
                with cur.copy(f"copy copy_t to stdout with (format {fmt})") as copy:
                    chunks = [bytes(c) for c in copy]
                got = copy_rows(chunks, csv_format=csv_format)
                assert got == [[str(a), b, c] for a, b, c in values], fmt


@pytest.mark.parametrize("line", ["\\N", ""])
def test_text_null_and_empty_string_differ(line: str) -> None:
    assert copy_rows([line.encode() + b"\n"], csv_format=False) == [[None if line else ""]]
