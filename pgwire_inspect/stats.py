"""Summaries of big captures: queries by kind, rows, bytes, errors, latency percentiles.

The collector plugs into `decode_frames` through its ``on_row`` and
``on_query`` callbacks with rows and queries not kept, so memory stays
bounded whatever the capture's size; it decodes every DataRow value on the
way (so the summary also proves the values decode). Latency is the time
from a query's first request message to its ReadyForQuery, from the
capture's timestamps.
"""

from __future__ import annotations

import functools
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ddsketch import DDSketch

from .conversation import Connection, QueryExchange, ResultSet, WireMessage

__all__ = ["EXACT_SAMPLES", "RELATIVE_ACCURACY", "ConnectionStats", "PatternStats",
           "StatsCollector", "normalize_sql"]

_STRING = re.compile(r"(?:[EeBbXxUu]&?)?'(?:[^']|'')*'")
_NUMBER = re.compile(r"(?<![\w$])[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)(?![\w])")
_SPACE = re.compile(r"\s+")
_IN_LIST = re.compile(r"\b(in\s*)\(\s*\?(?:\s*,\s*\?)+\s*\)", re.IGNORECASE)
#: Latencies kept per query text, for exact percentiles (8 bytes each).
EXACT_SAMPLES = 1000
#: Relative accuracy of the latency percentiles beyond `EXACT_SAMPLES`: a
#: reported p99 is within 0.5% of a latency that is truly at the 99th percentile.
RELATIVE_ACCURACY = 0.005


@functools.lru_cache(maxsize=8192)  # prepared statements send the same text again and again
def normalize_sql(sql: str | None) -> str:
    """The query text with constants replaced by ``?`` and whitespace collapsed.

    ``select * from t where id = 42 and name = 'x'`` and the same with 43 and
    'y' give the same text; lists of constants after IN, ``in (1, 2, 3)``, become ``in (?, ...)``.
    """
    if not sql:
        return "(no SQL)"
    text = _STRING.sub("?", sql)
    text = _NUMBER.sub("?", text)
    text = _IN_LIST.sub(r"\1(?, ...)", text)
    return _SPACE.sub(" ", text).strip()


@dataclass
class PatternStats:
    """Statistics of one normalized query text.

    The first `EXACT_SAMPLES` latencies are kept, and their percentiles are
    exact (linear interpolation between ranks). Beyond that, percentiles
    come from a DDSketch (Masson, Rim and Lee, "DDSketch: a fast and
    fully-mergeable quantile sketch with relative-error guarantees", VLDB
    2019; the ``ddsketch`` package), which holds every latency seen: its
    memory depends on the range of the latencies, not on how many there
    are, so a capture of any size is summarized in the same space.

    Attributes:
        pattern: the normalized text.
        count: queries with this text.
        errors: those that ended with an ErrorResponse.
        rows: DataRows they returned.
        total: summed latency, seconds.
        timed: queries with a latency (a request and its ReadyForQuery both seen).
        slowest: the largest latency, seconds (exact); NaN when none was timed.
        samples: the first `EXACT_SAMPLES` latencies, seconds.
        sketch: every latency, seconds, within `RELATIVE_ACCURACY`.
    """

    pattern: str
    count: int = 0
    errors: int = 0
    rows: int = 0
    total: float = 0.0
    timed: int = 0
    slowest: float = float("nan")
    samples: array[float] = field(default_factory=lambda: array("d"))
    sketch: DDSketch = field(default_factory=lambda: DDSketch(RELATIVE_ACCURACY))

    def add(self, latency: float | None, rows: int, error: bool) -> None:
        """Count one query; ``latency`` in seconds, None when it is not known."""
        self.count += 1
        self.rows += rows
        self.errors += int(error)
        if latency is None:
            return
        self.total += latency
        self.timed += 1
        if not latency <= self.slowest:  # also when slowest is still NaN
            self.slowest = latency
        if self.timed <= EXACT_SAMPLES:
            self.samples.append(latency)
        self.sketch.add(latency)

    @property
    def exact(self) -> bool:
        """True when the percentiles are exact (at most `EXACT_SAMPLES` timed queries)."""
        return self.timed <= EXACT_SAMPLES

    def quantiles(self) -> dict[str, float]:
        """p50, p90 and p99 latency and the exact maximum, in seconds; NaN when no query
        was timed. Exact up to `EXACT_SAMPLES` latencies, else within `RELATIVE_ACCURACY`."""
        if not self.timed:
            nan = float("nan")
            return {"p50": nan, "p90": nan, "p99": nan, "max": nan}
        if self.exact:
            ordered = sorted(self.samples)
            return {"p50": _interpolated(ordered, 0.5), "p90": _interpolated(ordered, 0.9),
                    "p99": _interpolated(ordered, 0.99), "max": self.slowest}
        q = self.sketch.get_quantile_value
        return {"p50": _at_most(q(0.5), self.slowest), "p90": _at_most(q(0.9), self.slowest),
                "p99": _at_most(q(0.99), self.slowest), "max": self.slowest}


def _interpolated(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, interpolating linearly between ranks."""
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _at_most(value: float | None, limit: float) -> float:
    """A sketch quantile, never above the exact maximum (the sketch rounds within its bucket)."""
    return float("nan") if value is None else min(value, limit)


@dataclass
class ConnectionStats:
    """Statistics of one connection.

    Attributes:
        conn: the connection's number; client, server: "ip:port".
        kinds: queries by kind ("simple", "extended", "function").
        rows: DataRows; values: column values decoded; value_errors: values that failed.
        errors: queries that ended with an ErrorResponse.
        bytes_f, bytes_b: bytes each way; malformed: malformed stretches;
        gaps / bytes_lost: holes in the capture.
        verdict: what the connection holds ("PostgreSQL", "encrypted (TLS)" ...).
    """

    conn: int
    client: str
    server: str
    kinds: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    values: int = 0
    value_errors: int = 0
    errors: int = 0
    bytes_f: int = 0
    bytes_b: int = 0
    malformed: int = 0
    gaps: int = 0
    bytes_lost: int = 0
    verdict: str = ""


class StatsCollector:
    """Collects statistics from `decode_frames` callbacks.

    Use ``decode_frames(frames, keep_messages=False, keep_rows=False,
    keep_queries=False, on_rows=c.on_rows, on_query=c.on_query)`` then
    ``c.finish(decoded.connections)``.
    """

    def __init__(self) -> None:
        self.patterns: dict[str, PatternStats] = {}
        self.connections: dict[int, ConnectionStats] = {}
        self._last_conn: Connection | None = None
        self._last_stats = ConnectionStats(-1, "", "")

    def _conn(self, conn: Connection) -> ConnectionStats:
        if conn is self._last_conn:  # rows come in runs of one connection
            return self._last_stats
        cs = self.connections.get(conn.key)
        if cs is None:
            cs = self.connections[conn.key] = ConnectionStats(conn.id, conn.client_text,
                                                              conn.server_text)
        self._last_conn, self._last_stats = conn, cs
        return cs

    def on_row(self, conn: Connection, result: ResultSet, row: WireMessage) -> None:
        """Decode one DataRow's values and count them."""
        cs = self._conn(conn)
        cs.rows += 1
        errors = conn.value_errors
        cs.values += len(conn.decode_row(result, row))
        cs.value_errors += conn.value_errors - errors

    def on_rows(self, conn: Connection, result: ResultSet, rows: list[WireMessage]) -> None:
        """Decode the values of a run of DataRows of one result and count them
        (`on_row` for many rows: pass one or the other to `decode_frames`)."""
        cs = self._conn(conn)
        cs.rows += len(rows)
        errors = conn.value_errors
        cs.values += sum(map(len, conn.decode_rows(result, rows)))
        cs.value_errors += conn.value_errors - errors

    def on_query(self, conn: Connection, q: QueryExchange) -> None:
        """Count one finished query under its normalized text."""
        cs = self._conn(conn)
        cs.kinds[q.kind] += 1
        error = q.error is not None
        cs.errors += int(error)
        key = normalize_sql(q.sql)
        ps = self.patterns.get(key)
        if ps is None:
            ps = self.patterns[key] = PatternStats(key)
        ps.add(q.duration, q.row_count, error)

    def finish(self, connections: list[Connection]) -> None:
        """Take bytes, malformed counts, gaps and verdicts from the decoded connections."""
        for conn in connections:
            cs = self._conn(conn)
            cs.conn = conn.id
            cs.bytes_f, cs.bytes_b = conn.bytes["F"], conn.bytes["B"]
            cs.malformed = len(conn.malformed)
            cs.gaps = len(conn.gaps)
            cs.bytes_lost = sum(g[2] for g in conn.gaps)
            cs.verdict = conn.verdict
        shown = {c.key for c in connections}
        self.connections = {k: v for k, v in self.connections.items() if k in shown}

    def slowest(self) -> list[PatternStats]:
        """Query patterns, the slowest (by p99, then max latency) first."""
        def key(ps: PatternStats) -> tuple[float, float]:
            q = ps.quantiles()
            return (-(q["p99"] if q["p99"] == q["p99"] else -1.0),
                    -(q["max"] if q["max"] == q["max"] else -1.0))

        return sorted(self.patterns.values(), key=key)

    def as_json(self) -> dict[str, Any]:
        """The whole summary as one JSON-ready object (``{"type": "Stats", ...}``)."""
        conns = sorted(self.connections.values(), key=lambda c: c.conn)
        return {
            "type": "Stats",
            "connections": [{
                "conn": c.conn, "client": c.client, "server": c.server, "verdict": c.verdict,
                "queries": dict(c.kinds), "rows": c.rows, "values": c.values,
                "value_errors": c.value_errors, "errors": c.errors,
                "bytes": {"F": c.bytes_f, "B": c.bytes_b}, "malformed": c.malformed,
                "gaps": c.gaps, "bytes_lost": c.bytes_lost} for c in conns],
            "queries": [{"sql": p.pattern, "count": p.count, "errors": p.errors, "rows": p.rows,
                         "total_s": p.total, **{f"{k}_s": v for k, v in p.quantiles().items()}}
                        for p in self.slowest()],
        }
