"""Record the captures in this folder from a real PostgreSQL server.

Usage (as root, for the live capture; the server must accept trust auth):

    .venv/bin/python captures/record.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Each scenario's client talks to the server through a small TCP relay on a
free loopback port, while pgwire-inspect's live capture records the relay's
connection to the server. The relay also writes down every byte it passed
on, in each direction: `NAME.json` holds those byte streams (hex) next to
`NAME.pcap`, plus what the client itself saw (the SQL it sent, the rows it
fetched). Tests decode the pcap and check the result against the relay's
bytes and the client's view: two records that do not depend on the decoder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg2
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pgwire_inspect.capture import LiveCapture, write_pcap  # noqa: E402
from pgwire_inspect.orm import (  # noqa: E402
    demo_program,
    ensure_demo_data,
    prepare_url,
    run_orm,
)


def show(value: Any) -> str | None:
    """A fetched value as text for the reference file (bytes as \\x hex, like PostgreSQL)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


class Relay:
    """A TCP relay on a free loopback port that logs both directions of each connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.streams: list[dict[str, bytearray]] = []
        self.threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            log = {"F": bytearray(), "B": bytearray()}
            self.streams.append(log)
            for src, dst, d in ((client, server, "F"), (server, client, "B")):
                t = threading.Thread(target=self._pump, args=(src, dst, log[d]), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, log: bytearray) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            log += data
            dst.sendall(data)

    def close(self) -> None:
        """Wait for the relayed connections to end, then stop listening."""
        for t in self.threads:
            t.join(timeout=10)
        self.listener.close()


def psycopg2_simple(dsn: str, info: dict[str, Any]) -> None:
    """psycopg2, simple Query: several types, two statements in one Query, an error, a notice."""
    conn = psycopg2.connect(dsn)
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


def psycopg_extended(dsn: str, info: dict[str, Any]) -> None:
    """psycopg 3, extended protocol: binary results, a named prepared statement, parameters."""
    sent: list[str] = []
    rows: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
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


def orm_demo(driver: str) -> Callable[[str, dict[str, Any]], None]:
    """The ORM demo (three steps) through SQLAlchemy with ``driver``."""

    def scenario(dsn: str, info: dict[str, Any]) -> None:
        url = prepare_url(dsn, driver)
        run = run_orm(url, demo_program())
        info["sent"] = [s.wire_sql for s in run.statements]
        info["instances"] = [
            {"class": i.class_name, "identity": list(i.identity),
             "attributes": {k: str(v) for k, v in i.attributes.items()}}
            for s in run.steps for i in s.instances if not i.from_identity_map]

    return scenario


SCENARIOS: dict[str, tuple[str, Callable[[str, dict[str, Any]], None]]] = {
    "orm-demo-psycopg2": ("the ORM demo with psycopg2 (simple Query, text results)",
                          orm_demo("psycopg2")),
    "orm-demo-psycopg": ("the ORM demo with psycopg 3 (Parse/Bind/Execute for parameters)",
                         orm_demo("psycopg")),
    "psycopg2-simple": ("psycopg2: types, two statements in one Query, an error, a notice",
                        psycopg2_simple),
    "psycopg-extended": ("psycopg 3: binary and text results, prepared statements",
                         psycopg_extended),
}


def record(name: str, dsn: str) -> None:
    """Record one scenario into NAME.pcap and NAME.json."""
    description, scenario = SCENARIOS[name]
    u = make_url(dsn)
    host, port = u.host or "127.0.0.1", u.port or 5432
    relay = Relay(host, port)
    relayed = u.set(host="127.0.0.1", port=relay.port)
    libpq = relayed.set(drivername="postgresql").render_as_string(hide_password=False)
    info: dict[str, Any] = {"description": description}
    cap = LiveCapture(host, port)
    cap.start()
    try:
        scenario(libpq + ("&" if "?" in libpq else "?") + "sslmode=disable", info)
        relay.close()
        cap.wait_for_close(_server_side_port(cap), timeout=5)
    finally:
        cap.stop()
    frames = cap.frames()
    write_pcap(HERE / f"{name}.pcap", frames)
    info["streams"] = [{d: bytes(s[d]).hex() for d in "FB"} for s in relay.streams]
    (HERE / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{name}: {len(frames)} frames, {len(relay.streams)} connection(s)")


def _server_side_port(cap: LiveCapture) -> int:
    # The relay's connection to the server: the client port of the last SYN seen.
    from pgwire_inspect.capture import TCP_ACK, TCP_SYN, decode_frame

    port = 0
    for f in cap.frames():
        seg = decode_frame(f)
        if seg is not None and seg.flags & TCP_SYN and not seg.flags & TCP_ACK:
            port = seg.sport
    return port


def main() -> None:
    """Record every scenario (or those named on the command line)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("names", nargs="*", help=f"scenarios (default all): {', '.join(SCENARIOS)}")
    args = ap.parse_args()
    unknown = set(args.names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    ensure_demo_data(prepare_url(args.dsn))
    for name in args.names or SCENARIOS:
        record(name, args.dsn)


if __name__ == "__main__":
    main()
