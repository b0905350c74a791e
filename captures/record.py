"""Record the captures in this folder from a real PostgreSQL server.

Usage (as root, for the live capture; the server must accept trust auth):

    .venv/bin/python captures/record.py [--dsn URL] [NAME ...]

(--dsn defaults to postgresql://postgres@127.0.0.1:5432/postgres; the
client programs of the scenarios NAME are in scenarios.py.)

Each scenario's clients talk to the server through a small TCP relay on a
free loopback port, while pgwire-inspect's live capture records the relay's
connections to the server. The relay also writes down every byte it passed
on, in each direction: `NAME.json` holds those byte streams (hex), one per
connection with the relay's port towards the server (`client_port`, the
client port in the pcap), next to `NAME.pcap`, plus what the client itself
saw (the SQL it sent, the rows it fetched ...). Tests decode the pcap and
check the result against the relay's bytes and the client's view: two
records that do not depend on the decoder.

The pcap keeps only the relay's connections: other clients of the same
server are left out. Scenarios that need pg_hba.conf entries (password
authentication) or IPv6 run against a throwaway cluster (initdb into a
temporary directory as the `postgres` user, removed afterwards); the
`tcpdump-any` scenario runs tcpdump (`-i any`, Linux cooked capture)
instead of the relay and the live capture. See README.md in this folder.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scenarios import AUTH_USERS, SCENARIOS, Endpoint  # noqa: E402

from pgwire_inspect.capture import Frame, LiveCapture, decode_frame, write_pcap  # noqa: E402
from pgwire_inspect.orm import ensure_demo_data, prepare_url  # noqa: E402


class Relay:
    """A TCP relay on a free loopback port that logs both directions of each connection."""

    def __init__(self, host: str, port: int, listen: str = "127.0.0.1") -> None:
        self.target = (host, port)
        family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        self.listener = socket.create_server((listen, 0), family=family)
        self.port = self.listener.getsockname()[1]
        self.streams: list[dict[str, Any]] = []
        self.threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                client, addr = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            log = {"F": bytearray(), "B": bytearray(), "client_port": server.getsockname()[1],
                   "app_port": addr[1]}
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
        for t in list(self.threads):
            t.join(timeout=10)
        self.listener.close()


# ---------------------------------------------------------------- recording


def record(name: str, server: Endpoint) -> None:
    """Record one scenario against ``server`` into NAME.pcap and NAME.json."""
    sc = SCENARIOS[name]
    if sc.prepare is not None:
        sc.prepare(server)
    try:
        info = record_tcpdump(name, server) if sc.tcpdump else record_relayed(name, server)
    finally:
        if sc.cleanup is not None:
            sc.cleanup(server)
    (HERE / f"{name}.json").write_text(json.dumps(info, indent=1, ensure_ascii=False) + "\n")


def record_relayed(name: str, server: Endpoint) -> dict[str, Any]:
    """Run the scenario through the relay while capturing; write NAME.pcap, return the info."""
    sc = SCENARIOS[name]
    listen = "::1" if ":" in server.host else "127.0.0.1"
    relay = Relay(server.host, server.port, listen)
    info: dict[str, Any] = {"description": sc.description,
                            "server": [server.host, server.port]}
    cap = LiveCapture(server.host, server.port)
    cap.start()
    try:
        sc.run(replace(server, host=listen, port=relay.port), info)
        relay.close()
        for s in relay.streams:
            cap.wait_for_close(s["client_port"], timeout=5)
    finally:
        cap.stop()
    ports = {s["client_port"] for s in relay.streams}
    frames = [f for f in cap.frames() if _between(f, server.port, ports)]
    write_pcap(HERE / f"{name}.pcap", frames)
    info["streams"] = [{"client_port": s["client_port"], "app_port": s["app_port"],
                        "F": bytes(s["F"]).hex(), "B": bytes(s["B"]).hex()}
                       for s in relay.streams]
    print(f"{name}: {len(frames)} frames, {len(relay.streams)} connection(s)")
    return info


def _between(frame: Frame, server_port: int, client_ports: set[int]) -> bool:
    """Is the frame TCP between the server port and one of the relay's ports?"""
    seg = decode_frame(frame)
    if seg is None:
        return False
    return ((seg.dport == server_port and seg.sport in client_ports)
            or (seg.sport == server_port and seg.dport in client_ports))


def record_tcpdump(name: str, server: Endpoint) -> dict[str, Any]:
    """Run the scenario directly against the server while tcpdump -i any writes NAME.pcap."""
    sc = SCENARIOS[name]
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        sys.exit("tcpdump is needed to record tcpdump-any (apt-get install -y tcpdump)")
    info: dict[str, Any] = {"description": sc.description, "server": [server.host, server.port]}
    path = HERE / f"{name}.pcap"
    proc = subprocess.Popen(
        [tcpdump, "-i", "any", "--immediate-mode", "-U", "-s", "0", "-Z", "root", "-w", str(path),
         f"tcp port {server.port}"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline()]  # ... "listening on any, link-type LINUX_SLL2 ..."
        while "listening" not in lines[-1]:
            if not lines[-1]:
                raise RuntimeError(f"tcpdump did not start: {' '.join(lines).strip()}")
            lines.append(proc.stderr.readline())
        info["tcpdump"] = lines[-1].strip()
        sc.run(server, info)
        time.sleep(1.5)  # let the FINs through (and a libpcap buffer timeout pass)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    info["tcpdump_stats"] = " ".join(err.split())
    print(f"{name}: {info['tcpdump']}")
    return info


# ---------------------------------------------------------------- throwaway cluster


def _bindir() -> Path:
    """The directory of initdb and pg_ctl."""
    for cand in [shutil.which("initdb"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                                                 reverse=True)]:
        if cand:
            return Path(os.path.realpath(cand)).parent
    sys.exit("initdb not found on PATH or under /usr/lib/postgresql/*/bin")


def _as_postgres(args: list[str]) -> None:
    """Run a command as the postgres user (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Endpoint]:
    """A PostgreSQL cluster in a temporary directory on 127.0.0.1 and ::1, removed afterwards.

    pg_hba.conf: scram-sha-256, md5 and password for the AUTH_USERS, trust
    for everyone else (TCP on 127.0.0.1 and ::1).
    """
    bindir = _bindir()
    tmp = Path(tempfile.mkdtemp(prefix="pgwire-cluster-"))
    data = tmp / "data"
    port = _free_port()
    started = False
    try:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(tmp, pw.pw_uid, pw.pw_gid)
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync"])
        hba = ["local all all trust"]
        hba += [f"host all {user} 127.0.0.1/32 {method}"
                for user, (_, method) in AUTH_USERS.items()]
        hba += ["host all all 127.0.0.1/32 trust", "host all all ::1/128 trust"]
        (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        opts = f"-p {port} -k {tmp} -c listen_addresses='127.0.0.1,::1' -c ssl=off"
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w",
                      "-o", opts, "start"])
        started = True
        ep = Endpoint("127.0.0.1", port)
        conn = psycopg2.connect(ep.url())
        conn.autocommit = True
        cur = conn.cursor()
        for user, (password, method) in AUTH_USERS.items():
            encryption = "md5" if method == "md5" else "scram-sha-256"
            cur.execute(f"set password_encryption = '{encryption}'")
            cur.execute(f"create role {user} login password %s", (password,))
        conn.close()
        yield ep
    finally:
        if started:
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """Record every scenario (or those named on the command line)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("names", nargs="*", help=f"scenarios (default all): {', '.join(SCENARIOS)}")
    args = ap.parse_args()
    unknown = set(args.names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    names = args.names or list(SCENARIOS)
    u = make_url(args.dsn)
    main_server = Endpoint(u.host or "127.0.0.1", u.port or 5432, u.username or "postgres",
                           u.database or "postgres", u.password)
    if any(SCENARIOS[n].server == "main" for n in names):
        ensure_demo_data(prepare_url(args.dsn))
        for name in names:
            if SCENARIOS[name].server == "main":
                record(name, main_server)
    if any(SCENARIOS[n].server != "main" for n in names):
        with throwaway_cluster() as cluster:
            for name in names:
                where = SCENARIOS[name].server
                if where == "cluster":
                    record(name, cluster)
                elif where == "cluster6":
                    record(name, replace(cluster, host="::1"))


if __name__ == "__main__":
    main()
