"""The client programs that captures/record.py records, one per capture.

Each scenario takes the `Endpoint` to connect to (the recording relay in
front of the server, or the server itself for tcpdump-any) and a dict it
fills with what the client saw: the SQL it sent, the rows it fetched, the
errors and notices it got. record.py writes that dict to NAME.json next to
the relay's byte streams. See README.md in this folder.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import psycopg
import psycopg2

from pgwire_inspect.orm import demo_program, prepare_url, run_orm

#: Roles of the throwaway cluster: user -> (password, pg_hba.conf method).
AUTH_USERS = {
    "pgwire_scram": ("secret-scram", "scram-sha-256"),
    "pgwire_md5": ("secret-md5", "md5"),
    "pgwire_password": ("secret-password", "password"),
}


def show(value: Any) -> str | None:
    """A fetched value as text for the reference file (bytes as \\x hex, like PostgreSQL)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: a server, or the relay in front of it."""

    host: str
    port: int
    user: str = "postgres"
    dbname: str = "postgres"
    password: str | None = None

    def url(self) -> str:
        """A libpq URI with sslmode=disable (TLS would hide the messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = quote(self.user) + (f":{quote(self.password)}" if self.password else "")
        return f"postgresql://{auth}@{host}:{self.port}/{self.dbname}?sslmode=disable"

    def libpq_env(self) -> dict[str, str]:
        """The environment for psql and pgbench (PGHOST, PGPORT ...)."""
        env = dict(os.environ, PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                   PGDATABASE=self.dbname, PGSSLMODE="disable")
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


# ---------------------------------------------------------------- scenarios


def psycopg2_simple(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg2, simple Query: several types, two statements in one Query, an error, a notice."""
    conn = psycopg2.connect(ep.url())
    conn.autocommit = True
    cur = conn.cursor()
    sent: list[str] = []
    rows: list[Any] = []

    def run(sql: str, fetch: bool = True) -> None:
        try:
            cur.execute(sql)
            sent.append(cur.query.decode())
            if fetch and cur.description:
                rows.append([[show(v) for v in r] for r in cur.fetchall()])
        except psycopg2.Error as exc:
            sent.append(sql)
            rows.append({"error": exc.pgcode})

    run("select 1::int4 as i, 'x'::varchar(40) as v, null::text as n, 2.50::numeric(12,4) as d, "
        "true as b, '2024-05-06 07:08:09+00'::timestamptz as t, '\\xdeadbeef'::bytea as by")
    run("select 1 as a; select 2 as b, 3 as c")
    run("select 1/0")
    run("do $$ begin raise notice 'hello from the server'; end $$", fetch=False)
    run("select generate_series(1, 5) as n")
    conn.close()
    info["sent"] = sent
    info["rows"] = rows


def psycopg_extended(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg 3, extended protocol: binary results, a named prepared statement, parameters."""
    sent: list[str] = []
    rows: list[Any] = []
    with psycopg.connect(ep.url(), autocommit=True) as conn:
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            cur.execute("select %s::int4 + 1 as n, %s::text as t, %s::int8 as z",
                        (41, "héllo", None), prepare=True)
            rows.append([[show(v) for v in r] for r in cur.fetchall()])
            sent.append("select $1::int4 + 1 as n, $2::text as t, $3::int8 as z")
        cur = conn.cursor(binary=True)
        for k in range(3):
            cur.execute("select id, username from users where id >= %s order by id", (k,),
                        prepare=True)
            rows.append([[show(v) for v in r] for r in cur.fetchall()])
    info["sent"] = sent
    info["rows"] = rows


def orm_demo(driver: str) -> Callable[[Endpoint, dict[str, Any]], None]:
    """The ORM demo (three steps) through SQLAlchemy with ``driver``."""

    def scenario(ep: Endpoint, info: dict[str, Any]) -> None:
        url = prepare_url(ep.url(), driver)
        run = run_orm(url, demo_program())
        info["sent"] = [s.wire_sql for s in run.statements]
        info["instances"] = [
            {"class": i.class_name, "identity": list(i.identity),
             "attributes": {k: str(v) for k, v in i.attributes.items()}}
            for s in run.steps for i in s.instances if not i.from_identity_map]

    return scenario


PSQL_SCRIPT = """\
\\set ON_ERROR_STOP on
create temp table psql_items (id int primary key, name text, price numeric(8,2));
\\copy psql_items from stdin with (format csv)
1,apple,0.50
2,"pear, green",0.75
3,plum,1.20
\\.
insert into psql_items values (4, 'fig', 2.00);
update psql_items set price = price * 2 where id = 1 returning id, price;
select id, name, price from psql_items order by id;
\\copy (select id, name from psql_items where price > 1) to stdout with (format csv, header)
begin;
delete from psql_items where id = 3;
rollback;
select count(*) as n from psql_items;
"""


def psql_script(ep: Endpoint, info: dict[str, Any]) -> None:
    """psql -f with \\copy from the script (CopyIn), \\copy to stdout (CopyOut) and statements."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "script.sql"
        script.write_text(PSQL_SCRIPT)
        out = subprocess.run(
            ["psql", "-h", ep.host, "-p", str(ep.port), "-U", ep.user, "-d", ep.dbname,
             "-X", "-f", str(script)],
            env=ep.libpq_env(), capture_output=True, text=True, check=True, timeout=30)
    info["script"] = PSQL_SCRIPT
    info["output"] = out.stdout


def _pgbench() -> str:
    found = shutil.which("pgbench") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"), reverse=True)), None)
    if not found:
        sys.exit("pgbench not found on PATH or under /usr/lib/postgresql/*/bin")
    return found


BENCH_DB = "pgwire_bench"


def _bench_db(direct: Endpoint, create: bool) -> None:
    """Drop the bench database, then (``create``) create it and initialise it (scale 1)."""
    conn = psycopg2.connect(replace(direct, dbname="postgres").url())
    conn.autocommit = True
    conn.cursor().execute(f"drop database if exists {BENCH_DB}")
    if create:
        conn.cursor().execute(f"create database {BENCH_DB}")
    conn.close()
    if create:
        subprocess.run([_pgbench(), "-i", "-s", "1", "-q"], check=True, capture_output=True,
                       env=replace(direct, dbname=BENCH_DB).libpq_env(), timeout=120)


def pgbench_prepared(ep: Endpoint, info: dict[str, Any]) -> None:
    """pgbench -M prepared -t 5 -c 2 (TPC-B like), several connections at once."""
    out = subprocess.run([_pgbench(), "-M", "prepared", "-t", "5", "-c", "2"],
                         env=replace(ep, dbname=BENCH_DB).libpq_env(), capture_output=True,
                         text=True, check=True, timeout=60)
    info["output"] = out.stdout
    info["transactions"] = 10


def psycopg_copy(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg 3 COPY: text and CSV in, text and binary out, and a COPY in that fails."""
    rows_in = [(1, "apple", "0.50"), (2, "tab\there", None), (3, "naïve", "1.25")]
    csv_in = '4,"pear, green",2.00\n5,,\n'
    with psycopg.connect(ep.url(), autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("create temp table copy_items (id int, name text, price numeric(8,2))")
        with cur.copy("COPY copy_items FROM STDIN") as copy:
            for row in rows_in:
                copy.write_row(row)
        with cur.copy("COPY copy_items FROM STDIN (FORMAT csv)") as copy:
            copy.write(csv_in)
        text_out = b""
        with cur.copy("COPY copy_items TO STDOUT") as copy:
            for chunk in copy:
                text_out += bytes(chunk)
        binary_out = b""
        with cur.copy("COPY (select id, name from copy_items order by id) "
                      "TO STDOUT (FORMAT binary)") as copy:
            for chunk in copy:
                binary_out += bytes(chunk)
        failure = ""
        try:
            with cur.copy("COPY copy_items FROM STDIN") as copy:
                copy.write_row((6, "never stored", "6.00"))
                raise RuntimeError("the client gave up")
        except Exception as exc:  # psycopg re-raises the block's error after CopyFail
            failure = f"{type(exc).__name__}: {exc}"
        cur.execute("select count(*) from copy_items")
        count = cur.fetchone()
    info["copy_in_text"] = [[show(v) for v in r] for r in rows_in]
    info["copy_in_csv"] = csv_in
    info["copy_out_text"] = text_out.decode()
    info["copy_out_binary"] = binary_out.hex()
    info["copy_fail_error"] = failure
    info["count_after"] = count[0] if count else None


CHANNEL = "pgwire_events"


def listen_notify(ep: Endpoint, info: dict[str, Any]) -> None:
    """LISTEN on one connection, NOTIFY from another, then a query on the listener."""
    listener = psycopg2.connect(ep.url())
    listener.autocommit = True
    notifier = psycopg2.connect(ep.url())
    notifier.autocommit = True
    lc, nc = listener.cursor(), notifier.cursor()
    lc.execute(f"LISTEN {CHANNEL}")
    lc.execute(f"NOTIFY {CHANNEL}, 'from the listener itself'")
    time.sleep(0.2)
    nc.execute(f"NOTIFY {CHANNEL}, 'hello from the notifier'")
    nc.execute("select pg_notify(%s, %s)", (CHANNEL, "second: ünïcode payload"))
    time.sleep(0.3)  # the listener is idle: the server sends the notifications now
    lc.execute("select 1 as after_notify")
    lc.fetchall()
    info["listener_pid"] = listener.get_backend_pid()
    info["notifier_pid"] = notifier.get_backend_pid()
    info["notifies"] = [{"pid": n.pid, "channel": n.channel, "payload": n.payload}
                        for n in listener.notifies]
    info["app_ports"] = {"listener": _local_port(listener), "notifier": _local_port(notifier)}
    notifier.close()
    listener.close()


def _local_port(conn: Any) -> int:
    """The client's local TCP port of a psycopg2 connection."""
    s = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        return int(s.getsockname()[1])
    finally:
        s.close()


def notices_errors(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg 3: notices while rows are returned, a unique violation, a syntax error."""
    notices: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with psycopg.connect(ep.url(), autocommit=True) as conn:
        conn.add_notice_handler(lambda d: notices.append(
            {"severity": d.severity_nonlocalized, "message": d.message_primary}))
        cur = conn.cursor()
        cur.execute("""
            create function pg_temp.count_with_notices(n int) returns setof int
            language plpgsql as $$
            begin
              for i in 1..n loop
                raise notice 'row %', i;
                if i = 2 then raise warning 'half way'; end if;
                return next i;
              end loop;
            end $$""")
        cur.execute("""
            create function pg_temp.noisy(i int) returns int language plpgsql as $$
            begin raise notice 'computing %', i; return i * 10; end $$""")
        cur.execute("select * from pg_temp.count_with_notices(3)")
        srf_rows = cur.fetchall()
        cur.execute("select i, pg_temp.noisy(i) as ten_i from generate_series(1, 3) as i")
        per_row = cur.fetchall()
        cur.execute("create temp table uniq (id int primary key, name text)")
        cur.execute("insert into uniq values (%s, %s)", (1, "first"))
        for sql, params in (("insert into uniq values (%s, %s)", (1, "again")),
                            ("select id, from uniq", None)):
            try:
                cur.execute(sql, params)
            except psycopg.Error as exc:
                d = exc.diag
                errors.append({"code": d.sqlstate, "message": d.message_primary,
                               "detail": d.message_detail, "position": d.statement_position,
                               "constraint": d.constraint_name})
    info["notices"] = notices
    info["errors"] = errors
    info["rows"] = [[list(r) for r in srf_rows], [list(r) for r in per_row]]


CANCEL_CLIENT = """
import json, sys, threading, time
import psycopg2
conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
cur = conn.cursor()
timer = threading.Timer(0.3, conn.cancel)
timer.start()
error, started = None, time.monotonic()
try:
    cur.execute("select pg_sleep(5)")
except psycopg2.Error as exc:
    error = exc.pgcode
elapsed = time.monotonic() - started
timer.join()
cur.execute("select 'still usable' as after_cancel")
print(json.dumps({"backend_pid": conn.get_backend_pid(), "error": error,
                  "elapsed": round(elapsed, 2), "after": cur.fetchone()[0]}))
conn.close()
"""


def cancel_query(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg2: select pg_sleep(5) cancelled after 0.3 s by conn.cancel() from a thread.

    The client runs in a child process: psycopg2's cancel() keeps the GIL while
    it waits for the server, which would stall this process's relay threads.
    """
    out = subprocess.run([sys.executable, "-c", CANCEL_CLIENT, ep.url()], capture_output=True,
                         text=True, check=True, timeout=30)
    info.update(json.loads(out.stdout))


def asyncpg_cursor(ep: Endpoint, info: dict[str, Any]) -> None:
    """asyncpg: a server-side cursor fetched 10 rows at a time (PortalSuspended)."""

    async def run() -> list[int]:
        conn = await asyncpg.connect(host=ep.host, port=ep.port, user=ep.user,
                                     database=ep.dbname, password=ep.password, ssl=False)
        try:
            async with conn.transaction():
                return [r[0] async for r in conn.cursor("select generate_series(1,50)",
                                                         prefetch=10)]
        finally:
            await conn.close()

    info["rows"] = asyncio.run(run())
    info["prefetch"] = 10


def login(user: str | None) -> Callable[[Endpoint, dict[str, Any]], None]:
    """psycopg2 logs in as ``user`` (None: postgres, trust) and runs select 1."""

    def scenario(ep: Endpoint, info: dict[str, Any]) -> None:
        if user is not None:
            ep = replace(ep, user=user, password=AUTH_USERS[user][0])
        conn = psycopg2.connect(ep.url())
        cur = conn.cursor()
        cur.execute("select 1 as one, current_user as who")
        info["rows"] = [[show(v) for v in r] for r in cur.fetchall()]
        info["user"] = ep.user
        info["method"] = AUTH_USERS[user][1] if user else "trust"
        info["password"] = ep.password
        conn.close()

    return scenario


def ipv6_session(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg2 over IPv6 (::1): a few rows."""
    conn = psycopg2.connect(ep.url())
    cur = conn.cursor()
    cur.execute("select inet_client_addr()::text as client, n from generate_series(1, 3) as n")
    info["rows"] = [[show(v) for v in r] for r in cur.fetchall()]
    info["sent"] = [cur.query.decode()]
    conn.close()


TCPDUMP_QUERIES = [
    "select version() like 'PostgreSQL%' as is_pg",
    "create temp table t (id int, name text)",
    "insert into t values (1, 'one'), (2, 'two')",
    "select id, name from t order by id",
]


def tcpdump_session(ep: Endpoint, info: dict[str, Any]) -> None:
    """psycopg2 (simple Query) while tcpdump -i any records: no relay."""
    conn = psycopg2.connect(ep.url())
    conn.autocommit = True
    cur = conn.cursor()
    sent = []
    for sql in TCPDUMP_QUERIES:
        cur.execute(sql)
        sent.append(cur.query.decode())
    info["rows"] = [[show(v) for v in r] for r in cur.fetchall()]
    info["sent"] = sent
    conn.close()


@dataclass(frozen=True)
class Scenario:
    """One capture: what it holds, the client program, and where it runs.

    ``server`` is "main" (the --dsn server), "cluster" (the throwaway cluster,
    IPv4) or "cluster6" (the throwaway cluster over ::1). ``prepare`` and
    ``cleanup`` run against the server directly, outside the capture.
    ``tcpdump``: record with tcpdump -i any instead of the relay.
    """

    description: str
    run: Callable[[Endpoint, dict[str, Any]], None]
    server: str = "main"
    prepare: Callable[[Endpoint], None] | None = None
    cleanup: Callable[[Endpoint], None] | None = None
    tcpdump: bool = False


SCENARIOS: dict[str, Scenario] = {
    "orm-demo-psycopg2": Scenario("the ORM demo with psycopg2 (simple Query, text results)",
                                  orm_demo("psycopg2")),
    "orm-demo-psycopg": Scenario("the ORM demo with psycopg 3 (Parse/Bind/Execute for "
                                 "parameters)", orm_demo("psycopg")),
    "psycopg2-simple": Scenario("psycopg2: types, two statements in one Query, an error, "
                                "a notice", psycopg2_simple),
    "psycopg-extended": Scenario("psycopg 3: binary and text results, prepared statements",
                                 psycopg_extended),
    "psql-script": Scenario("psql -f: \\copy in and out, insert/update/select, a rollback",
                            psql_script),
    "pgbench-prepared": Scenario("pgbench -M prepared -t 5 -c 2: a set-up connection and two "
                                 "clients at once", pgbench_prepared,
                                 prepare=lambda ep: _bench_db(ep, True),
                                 cleanup=lambda ep: _bench_db(ep, False)),
    "psycopg-copy": Scenario("psycopg 3 COPY: text and CSV in, text and binary out, CopyFail",
                             psycopg_copy),
    "listen-notify": Scenario("LISTEN on one connection, NOTIFY from another, notifications "
                              "on the listener", listen_notify),
    "notices-errors": Scenario("psycopg 3: notices amid rows, unique violation with detail, "
                               "syntax error with position", notices_errors),
    "cancel-query": Scenario("psycopg2: pg_sleep(5) cancelled by a CancelRequest on a second "
                             "connection", cancel_query),
    "asyncpg-cursor": Scenario("asyncpg: server-side cursor fetched 10 rows at a time "
                               "(Execute with a row limit, PortalSuspended)", asyncpg_cursor),
    "auth-scram": Scenario("login with SCRAM-SHA-256 (password secret-scram)",
                           login("pgwire_scram"), server="cluster"),
    "auth-md5": Scenario("login with md5 (password secret-md5)", login("pgwire_md5"),
                         server="cluster"),
    "auth-password": Scenario("login with a cleartext password (secret-password)",
                              login("pgwire_password"), server="cluster"),
    "auth-trust": Scenario("login with trust (AuthenticationOk at once)", login(None),
                           server="cluster"),
    "ipv6": Scenario("psycopg2 over IPv6 (::1)", ipv6_session, server="cluster6"),
    "tcpdump-any": Scenario("psycopg2 captured by tcpdump -i any (Linux cooked capture), "
                            "no relay", tcpdump_session, server="cluster", tcpdump=True),
}
