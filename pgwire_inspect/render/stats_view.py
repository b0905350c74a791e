"""The `read --stats` view: totals, one line per connection, query patterns slowest first."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..stats import EXACT_SAMPLES, RELATIVE_ACCURACY, StatsCollector

__all__ = ["render_stats"]


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.2f}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "K", "M", "G"):
        if size < 1024 or unit == "G":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(n)


def render_stats(console: Console, stats: StatsCollector, *, frames: int, top: int = 20) -> None:
    """Print the summary of a decoded capture.

    Args:
        console: where to print.
        stats: the collected statistics.
        frames: frames read from the capture.
        top: how many query patterns to list.
    """
    conns = sorted(stats.connections.values(), key=lambda c: c.conn)
    queries = sum(sum(c.kinds.values()) for c in conns)
    rows = sum(c.rows for c in conns)
    values = sum(c.values for c in conns)
    errors = sum(c.errors for c in conns)
    console.print(Text(
        f"{frames} frames, {len(conns)} connection(s), {queries} queries, {rows} rows "
        f"({values} values decoded), {errors} error(s), "
        f"{_size(sum(c.bytes_f for c in conns))} frontend → backend, "
        f"{_size(sum(c.bytes_b for c in conns))} backend → frontend", style="bold"))
    servers = {c.server for c in conns}
    one_server = len(servers) == 1
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0),
                  title=f"Connections to {next(iter(servers))}" if one_server else "Connections",
                  title_justify="left", title_style="bold")
    table.add_column("conn", justify="right", no_wrap=True)
    table.add_column("client" if one_server else "client → server", overflow="fold")
    table.add_column("queries", justify="right", overflow="fold")
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("err", justify="right", no_wrap=True)
    table.add_column("bytes F / B", justify="right", no_wrap=True)
    all_problems = []
    for c in conns:
        problems = []
        if c.gaps:
            problems.append(f"{c.gaps} gap(s), {c.bytes_lost} B lost")
        if c.malformed:
            problems.append(f"{c.malformed} malformed")
        if c.value_errors:
            problems.append(f"{c.value_errors} undecodable values")
        if c.verdict != "PostgreSQL":
            problems.append(c.verdict)
        all_problems.append(problems)
    if any(all_problems):
        table.add_column("problems", overflow="fold", style="yellow")
    for c, problems in zip(conns, all_problems, strict=True):
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(c.kinds.items()))
        cells = [str(c.conn), c.client if one_server else f"{c.client} → {c.server}",
                 kinds or "0", str(c.rows),
                 str(c.errors), f"{_size(c.bytes_f)} / {_size(c.bytes_b)}"]
        if any(all_problems):
            cells.append("; ".join(problems) or "-")
        table.add_row(*cells)
    console.print(table)
    patterns = stats.slowest()
    if not patterns:
        console.print(Text("No query ran to its end in this capture (a query counts once its "
                           "ReadyForQuery is seen).", style="yellow"))
        return
    sketched = any(not p.exact for p in patterns[:top])
    qt = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0),
               title=f"Queries by normalized text, slowest first (latency: request → "
                     f"ReadyForQuery, ms){'' if len(patterns) <= top else f'; top {top}'}",
               title_justify="left", title_style="bold",
               caption=(f"~ percentiles of more than {EXACT_SAMPLES} queries are within "
                        f"{RELATIVE_ACCURACY:.1%}; max is exact") if sketched else None,
               caption_justify="left")
    qt.add_column("count", justify="right")
    for name in ("p50", "p90", "p99", "max"):
        qt.add_column(name, justify="right", no_wrap=True)
    qt.add_column("rows", justify="right")
    qt.add_column("err", justify="right")
    qt.add_column("query", overflow="fold", ratio=1)
    for p in patterns[:top]:
        q = p.quantiles()
        mark = "" if p.exact else "~"
        qt.add_row(str(p.count), *(mark + _ms(q[k]) for k in ("p50", "p90", "p99")), _ms(q["max"]),
                   str(p.rows), str(p.errors) if p.errors else "", p.pattern[:300])
    console.print(qt)
