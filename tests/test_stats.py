"""read --stats: the summary agrees with the full decode, constants are normalized away."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pgwire_inspect.capture import open_capture
from pgwire_inspect.cli import cli
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.stats import StatsCollector, normalize_sql, percentile


def test_normalize_sql() -> None:
    a = normalize_sql("select * from t where id = 42 and name = 'it''s'")
    b = normalize_sql("select *  from t\nwhere id = 7 and name = 'x'")
    assert a == b == "select * from t where id = ? and name = ?"
    assert normalize_sql("select $1::int4, t1.c2 from t1") == "select $1::int4, t1.c2 from t1"
    assert normalize_sql("select 1 where x in (1, 2, 3)") == "select ? where x in (?, ...)"
    assert normalize_sql(None) == "(no SQL)"


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.5
    assert percentile(values, 0.99) == 99.01
    assert percentile([3.0], 0.9) == 3.0


def test_stats_agree_with_the_full_decode(zeek_dir: Path) -> None:
    path = zeek_dir / "greenhouse-app.pcap"
    full = decode_frames(open_capture(path), ports=None)
    c = StatsCollector()
    streamed = decode_frames(open_capture(path), ports=None, keep_messages=False,
                             keep_rows=False, keep_queries=False, on_row=c.on_row,
                             on_query=c.on_query)
    c.finish(streamed.connections)
    assert streamed.connections[0].queries == []  # nothing kept
    summary = c.as_json()
    for conn, cs in zip(full.connections, summary["connections"], strict=True):
        assert sum(cs["queries"].values()) == len(conn.queries)
        assert cs["rows"] == sum(q.row_count for q in conn.queries)
        assert cs["values"] == sum(len(r.message.values) for q in conn.queries
                                   for res in q.results for r in res.rows)
        assert cs["value_errors"] == 0
        assert cs["bytes"] == conn.bytes
    assert sum(p["count"] for p in summary["queries"]) == len(full.queries)
    begin = next(p for p in summary["queries"] if p["sql"] == "BEGIN")
    assert begin["count"] == sum(1 for q in full.queries if q.sql == "BEGIN")
    durations = sorted(q.duration for q in full.queries if q.sql == "BEGIN" and q.duration)
    assert begin["max_s"] == durations[-1]


def test_cli_stats_json(zeek_dir: Path) -> None:
    out = CliRunner().invoke(cli, ["read", str(zeek_dir / "psql-insert-fail-drop-fail.pcap"),
                                   "--stats", "--format", "jsonl"], catch_exceptions=False)
    summary = json.loads(out.output)
    assert summary["type"] == "Stats"
    assert summary["connections"][0]["errors"] == 2
    assert sum(p["errors"] for p in summary["queries"]) == 2
