"""read --stats: the summary agrees with the full decode, constants are normalized away."""

from __future__ import annotations

import json
import math
import pickle
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgwire_inspect.capture import open_capture
from pgwire_inspect.cli import cli
from pgwire_inspect.decode import decode_frames
from pgwire_inspect.stats import (
    EXACT_SAMPLES,
    RELATIVE_ACCURACY,
    PatternStats,
    StatsCollector,
    normalize_sql,
)


def test_normalize_sql() -> None:
    a = normalize_sql("select * from t where id = 42 and name = 'it''s'")
    b = normalize_sql("select *  from t\nwhere id = 7 and name = 'x'")
    assert a == b == "select * from t where id = ? and name = ?"
    assert normalize_sql("select $1::int4, t1.c2 from t1") == "select $1::int4, t1.c2 from t1"
    assert normalize_sql("select 1 where x in (1, 2, 3)") == "select ? where x in (?, ...)"
    assert normalize_sql("select 1 where x IN(1,2) or y not in ('a', 'b')") == (
        "select ? where x IN(?, ...) or y not in (?, ...)")
    # argument lists are not IN lists: the number of arguments is part of the query
    assert normalize_sql("select * from generate_series(1, 1000000) g") == (
        "select * from generate_series(?, ?) g")
    assert normalize_sql("insert into t values (1, 'a', 2.5)") == "insert into t values (?, ?, ?)"
    assert normalize_sql(None) == "(no SQL)"


def _exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def test_latency_percentiles_are_within_the_relative_accuracy() -> None:
    rng = random.Random(7)
    latencies = [rng.lognormvariate(-7, 1.5) for _ in range(50_000)]  # ~1 ms, long tail
    ps = PatternStats("select ?")
    for i, latency in enumerate(latencies):
        ps.add(latency, 1, error=i % 10 == 0)
    ps.add(None, 0, error=False)  # not timed: counted, not in the latencies
    q = ps.quantiles()
    for name, level in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = _exact(latencies, level)
        assert abs(q[name] - exact) <= 2 * RELATIVE_ACCURACY * exact, name
    assert q["max"] == max(latencies)
    assert (ps.count, ps.timed, ps.errors, ps.rows) == (50_001, 50_000, 5_000, 50_000)
    assert ps.total == sum(latencies)
    assert all(math.isnan(v) for v in PatternStats("x").quantiles().values())
    assert not ps.exact


def test_few_latencies_give_exact_percentiles() -> None:
    ps = PatternStats("select ?")
    for latency in [0.004, 0.001, 0.003, 0.002]:
        ps.add(latency, 0, False)
    assert ps.exact
    q = ps.quantiles()
    assert q["p50"] == pytest.approx(0.0025) and q["max"] == 0.004
    assert q["p99"] == pytest.approx(0.003 + 0.001 * 0.97)
    one = PatternStats("select 1")
    one.add(3.84, 1, False)
    assert one.quantiles() == {"p50": 3.84, "p90": 3.84, "p99": 3.84, "max": 3.84}
    for _ in range(EXACT_SAMPLES):
        one.add(0.5, 0, False)
    assert not one.exact and len(one.samples) == EXACT_SAMPLES


def test_latency_memory_does_not_grow_with_the_count() -> None:
    ps = PatternStats("a")
    rng = random.Random(3)
    sizes = []
    for i in range(1, 200_001):
        ps.add(10 ** rng.uniform(-4, 0), 0, False)  # 0.1 ms to 1 s
        if i in (20_000, 200_000):
            sizes.append(len(pickle.dumps(ps.sketch)))
    assert sizes[1] <= sizes[0] * 1.05 and sizes[1] < 20_000


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


def test_rows_counted_in_runs_or_one_by_one_alike() -> None:
    from tests.testpaths import CAPTURES

    for name in ("psycopg-extended.pcap", "asyncpg-cursor.pcap", "psycopg2-simple.pcap",
                 "psycopg-copy.pcap"):
        summaries = []
        for run in ("on_row", "on_rows"):
            c = StatsCollector()
            decoded = decode_frames(open_capture(CAPTURES / name), ports=None,
                                    keep_messages=False, keep_rows=False, keep_queries=False,
                                    on_query=c.on_query, **{run: getattr(c, run)})
            c.finish(decoded.connections)
            summaries.append(c.as_json())
        assert summaries[0] == summaries[1]
        assert sum(cs["values"] for cs in summaries[0]["connections"]) > 0


def test_decode_rows_is_decode_row_for_each() -> None:
    from tests.testpaths import CAPTURES

    for name in ("psycopg-extended.pcap", "asyncpg-cursor.pcap", "orm-demo-psycopg.pcap"):
        decoded = decode_frames(open_capture(CAPTURES / name), ports=None)
        for conn in decoded.connections:
            for q in conn.queries:
                for r in q.results:
                    if r.rows:
                        assert [list(v) for v in conn.decode_rows(r, r.rows)] == [
                            conn.decode_row(r, row) for row in r.rows]


def test_a_capture_without_a_finished_query_says_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pgwire_inspect.cli import cli
    from tests.testpaths import CAPTURES

    cut = tmp_path / "cut.pcap"
    cut.write_bytes((CAPTURES / "psycopg-extended.pcap").read_bytes()[:1200])
    out = CliRunner().invoke(cli, ["read", str(cut), "--stats"]).output
    assert "0 queries" in out
    assert "No query ran to its end in this capture" in out
    assert "Queries by normalized text" not in out
