"""The command line, end to end: read on real captures, demo and query on the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from testpaths import CAPTURES, ZEEK

from pgwire_inspect.cli import cli

MESSAGE_KEYS = {"conn", "client", "server", "dir", "type", "frame", "offset", "length", "fields"}


def invoke(args: list[str], **kw: Any) -> Any:
    return CliRunner().invoke(cli, ["--no-color", *args], catch_exceptions=False, **kw)


def jsonl(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_every_command_has_help() -> None:
    for name, command in cli.commands.items():
        result = invoke([name, "--help"])
        assert result.exit_code == 0, name
        assert command.help and "Example" in command.help, name


@pytest.mark.parametrize("name", sorted(p.name for p in ZEEK.glob("*.pcap")))
def test_read_every_zeek_capture_without_traceback(name: str) -> None:
    port = "15432" if "15432" in name else "5432"
    result = invoke(["read", str(ZEEK / name), "--port", port])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "connection(s)" in result.output


def test_read_says_tls_and_not_postgresql(zeek_dir: Path) -> None:
    out = invoke(["read", str(zeek_dir / "psql-aws-ssl-require.pcap")]).output
    assert "encrypted (TLS)" in out
    out = invoke(["read", str(zeek_dir / "http-on-port-5432.pcap")]).output
    assert "not PostgreSQL" in out


def test_read_shows_error_response_decoded(zeek_dir: Path) -> None:
    out = invoke(["read", str(zeek_dir / "psql-insert-fail-drop-fail.pcap")]).output
    assert "ErrorResponse" in out and "ERROR" in out


def test_read_jsonl_keys_and_fields() -> None:
    result = invoke(["read", str(CAPTURES / "psycopg2-simple.pcap"), "--format", "jsonl"])
    objs = jsonl(result.output)
    assert objs and all(set(o) == MESSAGE_KEYS for o in objs)
    rd = next(o for o in objs if o["type"] == "RowDescription")
    assert [c["type"] for c in rd["fields"]["columns"]][:2] == ["int4", "varchar(40)"]
    assert set(rd["fields"]["columns"][0]) == {"name", "table_oid", "column", "type_oid", "type",
                                               "typlen", "typmod", "format"}
    row = next(o for o in objs if o["type"] == "DataRow")
    assert row["fields"]["values"][:3] == ["1", "x", None]
    assert row["fields"]["raw"][:3] == ["31", "78", None]
    assert any(o["type"] == "ReadyForQuery" and o["fields"]["status"] == "I" for o in objs)
    assert any(o["type"] == "Query" and o["fields"]["sql"].startswith("select 1::int4")
               for o in objs)
    err = next(o for o in objs if o["type"] == "ErrorResponse")
    assert err["fields"]["code"] == "22012" and err["fields"]["severity"] == "ERROR"
    assert all(o["client"].startswith("127.0.0.1:") and o["server"] == "127.0.0.1:5432"
               for o in objs)


def test_read_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello, this is not a capture\n")
    result = CliRunner().invoke(cli, ["read", str(bad)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "not a pcap or pcapng file" in result.output
    missing = CliRunner().invoke(cli, ["read", str(tmp_path / "nope.pcap")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


# ------------------------------------------------------------------ live


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "pgwire_inspect", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


def test_demo_jsonl_instances_equal_their_data_rows(pg_dsn: str) -> None:
    proc = run_cli("demo", "--dsn", pg_dsn, "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    objs = jsonl(proc.stdout)
    messages = [o for o in objs if o["type"] != "OrmInstance"]
    instances = [o for o in objs if o["type"] == "OrmInstance"]
    assert all(set(o) == MESSAGE_KEYS for o in messages)
    names = [o["type"] for o in messages]
    for expected in ("StartupMessage", "AuthenticationOk", "ParameterStatus", "BackendKeyData",
                     "Query", "RowDescription", "DataRow", "CommandComplete", "ReadyForQuery",
                     "Terminate"):
        assert expected in names
    assert {tuple(i["identity"]) for i in instances} == {(1,), (2,)}
    by_pos = {(o["conn"], o["frame"], o["offset"]): o for o in messages}
    for inst in instances:
        row = by_pos[(inst["conn"], inst["frame"], inst["offset"])]
        assert row["type"] == "DataRow"
        rd = [o for o in messages if o["type"] == "RowDescription" and o["offset"] < row["offset"]
              and o["dir"] == "B"][-1]
        values = dict(zip([c["name"] for c in rd["fields"]["columns"]], row["fields"]["values"],
                          strict=True))
        for attr, col in inst["columns"].items():
            assert values[col] == str(inst["attributes"][attr])
    demo = next(i for i in instances if i["identity"] == [1])
    assert demo["attributes"]["username"] == "Demo"
    assert demo["attributes"]["email"] == "demo@aa.io"
    assert demo["columns"]["id"] == "users_id"


def test_demo_table_view(pg_dsn: str, tmp_path: Path) -> None:
    pcap = tmp_path / "demo.pcap"
    proc = run_cli("demo", "--dsn", pg_dsn, "--write-pcap", str(pcap))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "varchar(40)" in out
    assert "ORM instance User(1)" in out and "ORM instance User(2)" in out
    assert "identity map" in out  # step 2 sends nothing
    assert "SQLAlchemy set-up on first connect" in out
    assert "in transaction" in out
    assert "demo@aa.io" in out
    # The saved capture reads back with the same queries.
    back = run_cli("read", str(pcap), "--format", "jsonl")
    assert back.returncode == 0, back.stderr
    assert any(o["type"] == "DataRow" for o in jsonl(back.stdout))


def test_query_runs_a_user_function(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "myqueries.py").write_text(
        "from sqlalchemy import select\n"
        "from pgwire_inspect.orm import User\n"
        "def load_users(session):\n"
        "    return session.scalars(select(User).where(User.id <= 2).order_by(User.id)).all()\n"
        "def broken(session):\n"
        "    from sqlalchemy import text\n"
        "    return session.execute(text('select * from no_such_table')).all()\n")
    proc = run_cli("query", "--dsn", pg_dsn, "myqueries:load_users", "--format", "jsonl",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    objs = jsonl(proc.stdout)
    assert sorted(o["identity"] for o in objs if o["type"] == "OrmInstance") == [[1], [2]]
    bad = run_cli("query", "--dsn", pg_dsn, "myqueries:broken", cwd=tmp_path)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert "42P01" in bad.stdout and "no_such_table" in bad.stdout
    missing = run_cli("query", "--dsn", pg_dsn, "nomodule:fn", cwd=tmp_path)
    assert missing.returncode == 1 and "cannot import module 'nomodule'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_refused_connection_is_one_line(pg_dsn: str) -> None:
    proc = run_cli("demo", "--dsn", "postgresql://postgres@127.0.0.1:1/postgres")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "cannot connect" in proc.stderr
    debug = run_cli("--debug", "demo", "--dsn", "postgresql://postgres@127.0.0.1:1/postgres")
    assert "Traceback" in debug.stderr


def test_click_group_is_a_group() -> None:
    assert isinstance(cli, click.Group)


def test_ctrl_c_cancels_shows_saves_and_exits_130(pg_dsn: str, tmp_path: Path) -> None:
    import signal
    import time

    (tmp_path / "slow.py").write_text(
        "from sqlalchemy import text\n"
        "def sleepy(session):\n"
        "    return session.execute(text('select pg_sleep(30)')).all()\n")
    pcap = tmp_path / "partial.pcap"
    env = dict(os.environ, NO_COLOR="1", COLUMNS="120")
    proc = subprocess.Popen([sys.executable, "-m", "pgwire_inspect", "query", "--dsn", pg_dsn,
                             "slow:sleepy", "--write-pcap", str(pcap)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import psycopg

    deadline = time.monotonic() + 60
    with psycopg.connect(pg_dsn, autocommit=True) as watcher:
        while time.monotonic() < deadline:  # wait until the query runs on the server
            running = watcher.execute("select count(*) from pg_stat_activity "
                                      "where query = 'select pg_sleep(30)'").fetchone()
            if running and running[0]:
                break
            time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 10
    assert "Traceback" not in err and "interrupted" in err
    assert "select pg_sleep(30)" in out
    assert "57014" in out  # the cancelled query's ErrorResponse is on the wire
    assert pcap.stat().st_size > 0
    back = run_cli("read", str(pcap), "--format", "jsonl")
    assert any(o["type"] == "ErrorResponse" for o in jsonl(back.stdout))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partial.pcap", "slow.py"] or all(
        p.name in ("partial.pcap", "slow.py", "__pycache__") for p in tmp_path.iterdir())


def test_unknown_link_type_everywhere_is_bad_input(tmp_path: Path) -> None:
    from pgwire_inspect.capture import Frame, open_capture, write_pcap

    frames = [Frame(f.no, f.ts, 147, f.data, f.wirelen)  # LINKTYPE_USER0: nobody's format
              for f in open_capture(CAPTURES / "auth-md5.pcap")]
    path = tmp_path / "user0.pcap"
    write_pcap(path, frames)
    result = CliRunner().invoke(cli, ["read", str(path)])
    assert result.exit_code == 2
    assert "none of its 34 frames can be decoded" in result.output
    assert "unknown link type 147" in result.output and "Traceback" not in result.output


def test_bad_frames_among_good_ones_are_skipped_and_counted(tmp_path: Path) -> None:
    from pgwire_inspect.capture import Frame, open_capture, write_pcap

    frames = list(open_capture(CAPTURES / "auth-md5.pcap"))
    frames[3] = Frame(frames[3].no, frames[3].ts, 1, b"\x00" * 5, 5)  # a runt frame
    path = tmp_path / "runt.pcap"
    write_pcap(path, frames)
    result = CliRunner().invoke(cli, ["read", str(path), "--format", "jsonl"])
    assert result.exit_code == 0
    assert any(json.loads(line)["type"] == "AuthenticationOk"
               for line in result.stdout.splitlines() if line.startswith("{"))
