"""`demo` without a server: a throwaway cluster from the installed binaries, or a replay.

The throwaway cluster is started once for the demo through the command line
(module fixture) and once per way of ending a program (one parallel batch of
subprocesses); each check looks for leftovers: a postgres process, a
listening port, the temporary directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pgwire_inspect import cli_more, throwaway
from pgwire_inspect.cli import cli
from pgwire_inspect.cli_more import (
    DEMO_CAPTURE,
    dsn_given_by_user,
    libpq_environment_dsn,
    resolve_demo_target,
)
from pgwire_inspect.errors import PgWireError
from pgwire_inspect.throwaway import ThrowawayCluster, find_postgres_bin

ROOT = Path(__file__).resolve().parent.parent
BINDIR = find_postgres_bin()
needs_binaries = pytest.mark.skipif(BINDIR is None, reason="no PostgreSQL binaries installed")


def group() -> click.Group:
    """The real command line (`demo` and `replay` are registered on it)."""
    return cli


def closed_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connecting is refused while the socket lives."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def assert_gone(directory: Path, port: int, pid: int) -> None:
    assert not directory.exists()
    assert not listening(port)
    assert not throwaway._alive(pid)
    assert processes_mentioning(str(directory)) == []


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------- the throwaway demo


@pytest.fixture(scope="module")
def throwaway_demo() -> Iterator[dict[str, Any]]:
    """`demo` through the command line with nothing on the probed port: one throwaway run."""
    if BINDIR is None:
        pytest.skip("no PostgreSQL binaries installed")
    started: list[ThrowawayCluster] = []
    real_start = ThrowawayCluster.start

    def start_and_note(self: ThrowawayCluster) -> ThrowawayCluster:
        started.append(self)
        return real_start(self)

    sock, port = closed_port()
    with sock, pytest.MonkeyPatch.context() as mp:
        for name in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD"):
            mp.delenv(name, raising=False)
        mp.setattr(cli_more, "DEFAULT_PROBE", ("127.0.0.1", port))
        mp.setattr(ThrowawayCluster, "start", start_and_note)
        result = CliRunner(env={"COLUMNS": "200"}).invoke(
            group(), ["--no-color", "demo", "--capture", "relay", "--format", "jsonl"],
            catch_exceptions=False)
    (cluster,) = started
    assert cluster.directory is not None and cluster.port is not None and cluster.pid is not None
    yield {"result": result, "cluster": cluster, "probe": port}


def test_demo_runs_on_a_throwaway_cluster(throwaway_demo: dict[str, Any]) -> None:
    result, cluster = throwaway_demo["result"], throwaway_demo["cluster"]
    assert result.exit_code == 0, result.output
    assert (f"no PostgreSQL server answered at 127.0.0.1:{throwaway_demo['probe']} "
            "(connection refused): started a throwaway PostgreSQL 15") in result.stderr
    assert f"on 127.0.0.1:{cluster.port} (removed when the demo ends)" in result.stderr
    objs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert {o["client"].rsplit(":", 1)[0] for o in objs if "client" in o} == {"127.0.0.1"}
    assert {o["server"] for o in objs if "server" in o} == {f"127.0.0.1:{cluster.port}"}
    built = [(o["class"], o["identity"], o["attributes"]["username"], o["frame"] is not None)
             for o in objs if o["type"] == "OrmInstance"]
    assert built == [("User", [1], "Demo", True), ("User", [2], "alice", True)]


def test_throwaway_cluster_leaves_nothing_behind(throwaway_demo: dict[str, Any]) -> None:
    cluster = throwaway_demo["cluster"]
    assert cluster.directory.name.startswith("pgwire-inspect-pg-")
    assert_gone(cluster.directory, cluster.port, cluster.pid)


SCRIPT = """
import json, sys, time
from pgwire_inspect.throwaway import ThrowawayCluster, find_postgres_bin

how = sys.argv[1]
cluster = ThrowawayCluster(find_postgres_bin())
if how == "ctrl-c":
    with cluster:
        print(json.dumps([str(cluster.directory), cluster.port, cluster.pid]), flush=True)
        time.sleep(60)
else:
    cluster.start()
    print(json.dumps([str(cluster.directory), cluster.port, cluster.pid]), flush=True)
    if how == "exit":
        sys.exit(3)  # no stop(): the atexit handler must do it
    time.sleep(60)
"""


@needs_binaries
def test_cluster_removed_after_ctrl_c_sigterm_and_exit(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) in a with block, SIGTERM without one, sys.exit without stop()."""
    script = tmp_path / "cluster.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PYTHONPATH"] = str(ROOT)
    procs = {how: subprocess.Popen([sys.executable, str(script), how], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
             for how in ("ctrl-c", "sigterm", "exit")}
    clusters = {}
    for how, proc in procs.items():
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        directory, port, pid = json.loads(line)
        clusters[how] = (Path(directory), port, pid)
        if how != "exit":
            assert listening(port) and throwaway._alive(pid)
    procs["ctrl-c"].send_signal(signal.SIGINT)
    procs["sigterm"].send_signal(signal.SIGTERM)
    codes = {how: proc.wait(timeout=60) for how, proc in procs.items()}
    for proc in procs.values():
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    # An uncaught KeyboardInterrupt ends Python by SIGINT; SIGTERM became SystemExit(143).
    assert codes == {"ctrl-c": -signal.SIGINT, "sigterm": 128 + signal.SIGTERM, "exit": 3}
    for directory, port, pid in clusters.values():
        assert_gone(directory, port, pid)


# ---------------------------------------------------------------- no binaries: replay


def test_no_binaries_falls_back_to_replay(tmp_path: Path, clean_env: None) -> None:
    sock, port = closed_port()
    with sock, resolve_demo_target(None, environ={}, probe=("127.0.0.1", port),
                                   bin_dirs=[tmp_path]) as target:
        assert target.kind == "replay" and target.dsn is None and target.cluster is None
        assert target.capture is not None and target.capture.name == DEMO_CAPTURE
        assert target.capture.read_bytes() == (ROOT / "captures/orm-demo-psycopg2.pcap"
                                               ).read_bytes()
        (notice,) = target.notices
        assert notice.startswith("no PostgreSQL server or binaries found: this is a REPLAY of a "
                                 "recorded session (")
        assert notice.endswith("); point the demo at a real server with --dsn or DATABASE_URL")


def test_demo_command_replays_without_server_or_binaries(
        tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    sock, port = closed_port()
    monkeypatch.setattr(cli_more, "DEFAULT_PROBE", ("127.0.0.1", port))
    monkeypatch.setattr(throwaway, "postgres_bin_dirs", lambda: [tmp_path])  # finds nothing
    with sock:
        result = CliRunner(env={"COLUMNS": "200"}).invoke(
            group(), ["--no-color", "demo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "no PostgreSQL server or binaries found: this is a REPLAY" in result.stderr
    assert "this was a REPLAY" in result.stderr
    assert "ORM instance User(2)" in result.stdout
    assert result.stdout.count("built by SQLAlchemy from this DataRow") == 2


# ---------------------------------------------------------------- choosing the target


def test_find_postgres_bin(tmp_path: Path) -> None:
    assert find_postgres_bin([]) is None
    for tool in ("initdb", "pg_ctl"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    assert find_postgres_bin([tmp_path]) is None  # no postgres
    (tmp_path / "postgres").write_text("#!/bin/sh\n")
    assert find_postgres_bin([tmp_path]) is None  # not executable
    (tmp_path / "postgres").chmod(0o755)
    assert find_postgres_bin([Path("/nonexistent"), tmp_path]) == tmp_path
    if BINDIR is not None:
        assert (BINDIR / "initdb").is_file() and BINDIR in throwaway.postgres_bin_dirs()


def test_libpq_environment_dsn() -> None:
    assert libpq_environment_dsn({}) is None
    assert libpq_environment_dsn({"PGPORT": "5433", "PGUSER": "alice"}) == (
        "postgresql://alice@127.0.0.1:5433/alice")
    assert libpq_environment_dsn({"PGHOST": "db.example", "PGPASSWORD": "p@ss/w:rd",
                                  "PGDATABASE": "shop"}) == (
        "postgresql://postgres:p%40ss%2Fw%3Ard@db.example:5432/shop")
    with pytest.raises(PgWireError, match="PGPORT is not a port number"):
        libpq_environment_dsn({"PGPORT": "fifty"})


def test_target_order_given_then_environment() -> None:
    env = {"DATABASE_URL": "postgresql://u@h:1/d", "PGPORT": "7"}
    assert resolve_demo_target("postgresql://x@y:2/z", environ=env).dsn == "postgresql://x@y:2/z"
    t = resolve_demo_target(None, environ=env)
    assert (t.kind, t.dsn) == ("environment", "postgresql://u@h:1/d")
    t = resolve_demo_target(None, environ={"PGPORT": "7"})
    assert (t.kind, t.dsn) == ("environment", "postgresql://postgres@127.0.0.1:7/postgres")
    assert t.notices == ["using the server of PGPORT"]


def test_target_is_a_server_that_accepts_the_login(pg_dsn: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_dsn)
    host, port = url.host or "127.0.0.1", url.port or 5432
    with resolve_demo_target(None, environ={}, probe=(host, port), bin_dirs=[]) as t:
        assert (t.kind, t.dsn) == ("local", f"postgresql://postgres@{host}:{port}/postgres")
    # Something accepts TCP but is no PostgreSQL: not used (and, without binaries, a replay).
    with socket.create_server(("127.0.0.1", 0)) as fake:
        fake_port = fake.getsockname()[1]

        def hang_up() -> None:
            for _ in range(2):  # the TCP probe, then the login
                conn, _ = fake.accept()
                conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with resolve_demo_target(None, environ={}, probe=("127.0.0.1", fake_port),
                                 bin_dirs=[]) as t:
            assert t.kind == "replay"
            assert t.notices[0].startswith(f"the server at 127.0.0.1:{fake_port} refused the "
                                           "login as postgres (")
            assert ", and no PostgreSQL binaries found: this is a REPLAY" in t.notices[0]
        thread.join(5)


def test_dsn_given_by_user_tells_default_from_given() -> None:
    seen: list[str | None] = []

    @click.command()
    @click.option("--dsn", envvar="DATABASE_URL", default="postgresql://default")
    def show(dsn: str) -> None:
        seen.append(dsn_given_by_user("dsn", dsn))

    runner = CliRunner()
    runner.invoke(show, [], env={"DATABASE_URL": None}, catch_exceptions=False)
    runner.invoke(show, ["--dsn", "postgresql://given"], catch_exceptions=False)
    runner.invoke(show, [], env={"DATABASE_URL": "postgresql://env"}, catch_exceptions=False)
    assert seen == [None, "postgresql://given", "postgresql://env"]
