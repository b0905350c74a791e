"""A throwaway PostgreSQL cluster: a new cluster in a temporary directory, removed afterwards.

`ThrowawayCluster` runs ``initdb`` into a temporary directory, lets every
user in without a password from 127.0.0.1 only (``trust`` in pg_hba.conf),
starts the server with ``pg_ctl`` on a free port of 127.0.0.1, and on
`ThrowawayCluster.stop` stops it (``pg_ctl stop -m fast``) and removes the
directory. It stops also on an error or Ctrl-C inside a ``with`` block, on
SIGTERM and SIGHUP (turned into ``SystemExit`` while the cluster runs, so
``finally`` blocks run; a handler the program installed itself is called
after the cluster stopped), and at interpreter exit (``atexit``). Only a
SIGKILL of the Python process leaves it running.

PostgreSQL refuses to run as root: as root, the cluster belongs to and runs
as the ``postgres`` system user if there is one, else ``nobody``.

Specs: PostgreSQL docs, "initdb", "pg_ctl", "The pg_hba.conf File",
"Connections and Authentication" (listen_addresses, port,
unix_socket_directories).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .errors import PgWireError

__all__ = ["ThrowawayCluster", "find_postgres_bin", "postgres_bin_dirs"]

_TOOLS = ("initdb", "pg_ctl", "postgres")
_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
_STOP_SIGNALS = ("SIGTERM", "SIGHUP")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def postgres_bin_dirs() -> list[Path]:
    """The directories searched for the PostgreSQL server binaries, in order.

    Returns:
        The directory of ``initdb`` on PATH (its symlinks resolved), then
        ``/usr/lib/postgresql/<version>/bin`` newest version first (Debian,
        Ubuntu), then ``/usr/local/pgsql/bin`` (a build from source).
    """
    dirs: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        dirs.append(Path(os.path.realpath(on_path)).parent)
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        dirs.append(Path(found))
    dirs.append(Path("/usr/local/pgsql/bin"))
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_postgres_bin(search: Sequence[str | os.PathLike[str]] | None = None) -> Path | None:
    """The first directory that holds ``initdb``, ``pg_ctl`` and ``postgres``.

    Args:
        search: the directories to look in; None searches `postgres_bin_dirs`.

    Returns:
        The directory, or None when no directory has all three executables.
    """
    dirs = [Path(d) for d in search] if search is not None else postgres_bin_dirs()
    for d in dirs:
        if all(os.access(d / tool, os.X_OK) and (d / tool).is_file() for tool in _TOOLS):
            return d
    return None


def _free_port(host: str) -> int:
    with socket.create_server((host, 0)) as s:
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class ThrowawayCluster:
    """A temporary PostgreSQL cluster on 127.0.0.1 with trust authentication.

    Use it as a context manager, or call `start` and `stop`::

        with ThrowawayCluster(find_postgres_bin()) as pg:
            engine = create_engine(pg.dsn)

    Args:
        bindir: the directory of ``initdb``, ``pg_ctl`` and ``postgres``
            (see `find_postgres_bin`).
        host: the address the server listens on (IPv4 loopback).
        timeout: seconds each of initdb, start and stop may take.

    Attributes:
        bindir: as given.
        directory: the temporary directory (data directory, log, socket), once started.
        port: the TCP port, once started.
        pid: the postmaster's process ID, once started.
    """

    def __init__(self, bindir: str | os.PathLike[str], *, host: str = "127.0.0.1",
                 timeout: float = 60) -> None:
        self.bindir = Path(bindir)
        self.host = host
        self.timeout = timeout
        self.directory: Path | None = None
        self.port: int | None = None
        self.pid: int | None = None
        self._account: pwd.struct_passwd | None = None
        self._handlers: dict[int, Any] = {}
        self._stopped = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------- public

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        if self.directory is None:
            raise PgWireError("the throwaway cluster has not been started")
        return self.directory / "data"

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        if self.port is None:
            raise PgWireError("the throwaway cluster has not been started")
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def version(self) -> str:
        """The server's version as ``pg_ctl --version`` prints it ("15.8"), or "" if unknown."""
        try:
            out = subprocess.run([str(self.bindir / "pg_ctl"), "--version"], capture_output=True,
                                 text=True, timeout=10, check=False).stdout
        except OSError:
            return ""
        found = re.search(r"(\d+(?:\.\d+)*)", out)
        return found.group(1) if found else ""

    def start(self) -> ThrowawayCluster:
        """Create the cluster and start its server; returns self.

        Raises:
            PgWireError: no account to run the server as, or initdb or pg_ctl
                failed (the message quotes the last line of its output). What
                was created is removed first.
        """
        if self.directory is not None:
            raise PgWireError("a throwaway cluster can be started once")
        self._account = self._run_as()
        self.directory = Path(tempfile.mkdtemp(prefix="pgwire-inspect-pg-"))
        atexit.register(self.stop)
        self._catch_signals()
        try:
            if self._account is not None:
                os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)
            self._run(["initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
            (self.data_dir / "pg_hba.conf").write_text(_HBA)
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove the directory. Idempotent.

        A server that does not stop in time is killed (SIGQUIT, then SIGKILL).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            if self.pid is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError, PgWireError):
                    self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w",
                               "-t", str(int(self.timeout)), "stop"], "pg_ctl stop")
                self._kill_leftover(self.pid)
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
            self._restore_signals()
            atexit.unregister(self.stop)

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"port {self.port}"
        return f"ThrowawayCluster({self.bindir}, {state})"

    # ---------------------------------------------------------- internals

    @staticmethod
    def _run_as() -> pwd.struct_passwd | None:
        """The account to run PostgreSQL as: None (this one) unless running as root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise PgWireError("PostgreSQL refuses to run as root, and there is no 'postgres' or "
                          "'nobody' user to run it as")

    def _run(self, args: list[str], what: str) -> None:
        assert self.directory is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        extra: dict[str, Any] = {}
        if self._account is not None:
            env.update(HOME=str(self.directory), USER=self._account.pw_name,
                       LOGNAME=self._account.pw_name)
            extra = {"user": self._account.pw_uid, "group": self._account.pw_gid,
                     "extra_groups": []}
        try:
            done = subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=self.directory,
                                  env=env, capture_output=True, text=True, timeout=self.timeout,
                                  check=False, start_new_session=True, **extra)
        except subprocess.TimeoutExpired:
            raise PgWireError(f"{what} took longer than {self.timeout:g} s") from None
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            raise PgWireError(f"{what} failed: {lines[-1] if lines else done.returncode}")

    def _start_server(self) -> None:
        assert self.directory is not None
        log = self.directory / "server.log"
        for attempt in range(3):
            self.port = _free_port(self.host)
            opts = (f"-p {self.port} -k {self.directory} -c listen_addresses={self.host} "
                    "-c ssl=off -c fsync=off -c full_page_writes=off")
            try:
                self._run(["pg_ctl", "-D", str(self.data_dir), "-l", str(log), "-w",
                           "-t", str(int(self.timeout)), "-o", opts, "start"], "pg_ctl start")
                break
            except PgWireError as exc:
                text = log.read_text(errors="replace") if log.exists() else ""
                if "could not bind" in text and attempt < 2:
                    continue  # someone took the port in the meantime: try another
                last = [ln for ln in text.splitlines() if ln.strip()]
                raise PgWireError(f"{exc}{': ' + last[-1] if last else ''}") from None
        pid_file = self.data_dir / "postmaster.pid"
        self.pid = int(pid_file.read_text().split()[0])

    @staticmethod
    def _kill_leftover(pid: int) -> None:
        for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if not _alive(pid):
                return
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _catch_signals(self) -> None:
        """While the cluster runs, SIGTERM and SIGHUP stop it and end the program."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in _STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue
            self._handlers[signum] = previous
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Stop the cluster; then the program's own handler, or exit as the default would."""
        previous = self._handlers.get(signum)
        self.stop()
        if callable(previous):
            handler: Callable[[int, FrameType | None], Any] = previous
            handler(signum, frame)
            return
        raise SystemExit(128 + signum)

    def _restore_signals(self) -> None:
        if not self._handlers or threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, previous)
        self._handlers.clear()
