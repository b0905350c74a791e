"""watch: incremental decoding with callbacks, the command in-process and as a real process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from pgwire_inspect import read_capture
from pgwire_inspect.api import CapturedQuery
from pgwire_inspect.capture import open_capture
from pgwire_inspect.cli import cli
from pgwire_inspect.cli_watch import register
from pgwire_inspect.stats import StatsCollector, normalize_sql
from pgwire_inspect.watch import PortSniffer, Watcher

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
EXAMPLE = ROOT / "examples" / "fastapi_app"

register(cli)
RUNNER = ("from pgwire_inspect.cli import cli; from pgwire_inspect.cli_watch import register; "
          "register(cli); cli(prog_name='pgwire-inspect')")


def test_watch_is_registered_with_help() -> None:
    assert isinstance(cli, click.Group) and "watch" in cli.commands
    result = CliRunner().invoke(cli, ["watch", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.output and "--format" in result.output


def test_watch_on_an_unknown_interface_is_one_line_and_exit_2() -> None:
    result = CliRunner().invoke(cli, ["--no-color", "watch", "--iface", "nosuchif0"])
    assert result.exit_code == 2
    assert "cannot capture on interface 'nosuchif0'" in result.stderr
    assert "Traceback" not in result.output


# -- the library side on recorded frames -------------------------------------------------


def test_watcher_reports_queries_as_read_capture_decodes_them() -> None:
    seen: list[CapturedQuery] = []
    conns: list[tuple[int, dict[str, str] | None]] = []
    stats = StatsCollector()
    decoded = Watcher(5432, on_query=seen.append, sample_rows=2, stats=stats,
                      on_connection=lambda c, p: conns.append((c.id, p))).run(
        open_capture(CAPTURES / "psycopg2-simple.pcap"))
    full = read_capture(CAPTURES / "psycopg2-simple.pcap")
    assert [(q.sql, q.kind, q.row_count, q.command_tag) for q in seen] == [
        (q.sql, q.kind, q.row_count, q.command_tag) for q in full.queries]
    # rows are sampled: at most two of each result
    assert [q.rows for q in seen] == [q.rows[:2] for q in full.queries]
    assert seen[-1].row_count == 5 and len(seen[-1].rows) == 2
    startup = next(m for m in full.messages if m.name == "StartupMessage")
    assert conns == [(0, startup.fields()["parameters"])]
    assert conns[0][1] is not None and conns[0][1]["user"] == "postgres"
    stats.finish(decoded.connections)
    assert sum(sum(c.kinds.values()) for c in stats.connections.values()) == len(full.queries)


def test_watcher_picks_up_a_connection_already_open() -> None:
    frames = list(open_capture(CAPTURES / "psycopg2-simple.pcap"))
    full = read_capture(CAPTURES / "psycopg2-simple.pcap").queries
    conns: list[tuple[int, dict[str, str] | None]] = []
    seen: list[CapturedQuery] = []
    # from the 20th frame on: no handshake, no StartupMessage, queries under way
    Watcher(5432, on_query=seen.append, on_connection=lambda c, p: conns.append((c.id, p))
            ).run(frames[19:])
    assert conns == [(0, None)]
    assert seen and [q.sql for q in seen] == [q.sql for q in full[-len(seen):]]
    assert seen[-1].rows == full[-1].rows[:3]


def test_watcher_says_when_a_connection_turns_to_tls(zeek_dir: Path) -> None:
    notices: list[str] = []
    Watcher(5432, on_notice=notices.append).run(
        open_capture(zeek_dir / "psql-aws-ssl-require.pcap"))
    assert len(notices) == 1
    assert "switched to TLS (SSLRequest answered 'S')" in notices[0]
    assert "sslmode=disable" in notices[0]


# -- the command in-process ---------------------------------------------------------------


def run_with_client(monkeypatch: pytest.MonkeyPatch, args: list[str],
                    client: Callable[[], None]) -> Any:
    """Invoke watch; ``client`` runs in a thread once the packet socket is open, then Ctrl-C."""
    ready = threading.Event()
    start = PortSniffer.start

    def started(self: PortSniffer) -> PortSniffer:
        out = start(self)
        ready.set()
        return out

    monkeypatch.setattr(PortSniffer, "start", started)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            assert ready.wait(10), "watch did not start"
            client()
        except BaseException as exc:
            errors.append(exc)
        finally:  # Ctrl-C: the command stops, reads what is queued, prints the summary
            if ready.is_set():
                os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        result = CliRunner().invoke(cli, ["--no-color", "watch", *args])
    finally:
        thread.join()
    assert not errors, errors
    return result


def marker_client(pg_dsn: str, marker: str) -> Callable[[], None]:
    def client() -> None:
        with psycopg.connect(pg_dsn, autocommit=True, application_name=marker) as conn:
            conn.execute(f"select %s::int + 1 as n, '{marker}' as m", (41,)).fetchall()
            conn.execute(f"select g, '{marker}' as m from generate_series(1, 7) g").fetchall()
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute(f"select 1/0 as \"{marker}\"")
    return client


def test_watch_prints_each_query_then_a_summary(pg_dsn: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"w{uuid.uuid4().hex[:10]}"
    port = make_url(pg_dsn).port or 5432
    result = run_with_client(monkeypatch, ["--port", str(port), "--duration", "30"],
                             marker_client(pg_dsn, marker))
    assert result.exit_code == 0, result.output
    blocks = result.stdout.split("\n\n")
    [params] = [b for b in blocks if f"'{marker}' as m" in b and "$1" in b]
    assert "SELECT 1  1 row" in params and "$1 = 41" in params and "(extended)" in params
    assert "42" in params.split("$1 = 41")[1]  # the row: 42, marker
    [series] = [b for b in blocks if f"'{marker}' as m from generate_series" in b]
    assert "SELECT 7  7 rows" in series and "… 4 more rows" in series  # 3 rows shown
    [failed] = [b for b in blocks if f'select 1/0 as "{marker}"' in b]
    assert "ERROR 22012: division by zero" in failed
    assert f"application_name={marker}" in result.stdout
    # the summary, as read --stats prints it
    summary = result.stdout.split("Queries by normalized text")[1]
    assert "select g, ? as m from" in summary and "generate_series(?," in summary
    assert "watching TCP port" in result.stderr


def test_watch_streams_json_lines(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = f"j{uuid.uuid4().hex[:10]}"
    port = make_url(pg_dsn).port or 5432
    result = run_with_client(monkeypatch, ["--port", str(port), "--duration", "30",
                                           "--format", "jsonl"],
                             marker_client(pg_dsn, marker))
    assert result.exit_code == 0, result.output
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert objects[-1]["type"] == "Stats"
    mine = {o["conn"] for o in objects[:-1] if o["type"] == "StartupMessage"
            and o["fields"]["parameters"].get("application_name") == marker}
    assert len(mine) == 1
    names = [o["type"] for o in objects[:-1] if o["conn"] in mine]
    assert names.count("DataRow") == 8 and names.count("ErrorResponse") == 1
    rows = [o["fields"]["values"] for o in objects[:-1]
            if o["conn"] in mine and o["type"] == "DataRow"]
    assert rows[0] == ["42", marker]
    stats = objects[-1]
    series = normalize_sql(f"select g, '{marker}' as m from generate_series(1, 7) g")
    assert any(q["sql"] == series and q["rows"] >= 7 for q in stats["queries"])


# -- a real process watching a real application ----------------------------------------------


class Reader:
    """Collects a pipe's lines in a thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return False

    @property
    def text(self) -> str:
        return "".join(self.lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_watch_process_sees_a_uvicorn_app_and_stops_at_ctrl_c(pg_dsn: str) -> None:
    import httpx

    from pgwire_inspect.orm import ensure_demo_data, prepare_url

    ensure_demo_data(prepare_url(pg_dsn, "asyncpg"))
    db_port = make_url(pg_dsn).port or 5432
    app_port = free_port()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONUNBUFFERED": "1",
           "DATABASE_URL": make_url(pg_dsn).set(drivername="postgresql+asyncpg")
           .render_as_string(hide_password=False) + "?ssl=disable"}
    watch = subprocess.Popen([sys.executable, "-c", RUNNER, "watch", "--port", str(db_port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    app = subprocess.Popen([sys.executable, "-m", "uvicorn", "main:app", "--app-dir",
                            str(EXAMPLE), "--port", str(app_port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    out, err, app_err = Reader(watch.stdout), Reader(watch.stderr), Reader(app.stderr)
    nobody = f"nobody-{uuid.uuid4().hex[:10]}"
    try:
        assert err.wait_for("watching TCP port", 30), err.text
        assert app_err.wait_for("Application startup complete", 30), app_err.text
        with httpx.Client(base_url=f"http://127.0.0.1:{app_port}", timeout=10) as client:
            assert client.get("/users/Demo").json()["username"] == "Demo"
            assert client.get(f"/users/{nobody}").status_code == 404
        assert out.wait_for(f"$1 = '{nobody}'", 15), out.text
        watch.send_signal(signal.SIGINT)
        assert watch.wait(15) == 0, err.text
    finally:
        for proc in (watch, app):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    assert out.wait_for("Queries by normalized text", 5), out.text
    blocks = out.text.split("\n\n")
    [found] = [b for b in blocks if "$1 = 'Demo'" in b]
    assert "SELECT 1  1 row" in found and "FROM users" in found and "demo@aa.io" in found
    [missing] = [b for b in blocks if f"$1 = '{nobody}'" in b]
    assert "SELECT 0  0 rows" in missing
    assert "WHERE users.username = $1::VARCHAR" in out.text.split("Queries by normalized")[1]
