"""The replay server: a loopback TCP listener feeding each client to a `ReplaySession`."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from ..conversation import Connection
from ._recording import Recording
from ._session import Divergence, ParameterMismatch, ReplaySession

__all__ = ["ReplayServer"]


class ReplayServer:
    """A PostgreSQL server on a loopback port that replays one recorded connection.

    Every client connection gets its own `ReplaySession` replaying the same
    recording from its start. Threads: one accepting, one per client.

    Args:
        connection: the recorded connection (see `Recording`).
        host: the address to listen on.
        port: the TCP port; 0 picks a free one.

    Raises:
        CaptureError: the connection cannot be replayed (see `Recording`).
    """

    def __init__(self, connection: Connection, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.recording = Recording(connection)
        self.host = host
        self.port = port
        #: One session per client connection, in the order they connected.
        self.sessions: list[ReplaySession] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def divergences(self) -> list[Divergence]:
        """Every divergence of every client connection, in order."""
        return [d for s in list(self.sessions) for d in s.divergences]

    @property
    def mismatches(self) -> list[ParameterMismatch]:
        """Every `ParameterMismatch` of every client connection, in order."""
        return [m for s in list(self.sessions) for m in s.mismatches]

    def dsn(self) -> str:
        """A libpq URI of the server with the recorded user and database."""
        from urllib.parse import quote

        return (f"postgresql://{quote(self.recording.user, safe='')}@{self.host}:{self.port}/"
                f"{quote(self.recording.database, safe='')}")

    def start(self) -> ReplayServer:
        """Listen and start serving in background threads.

        Raises:
            OSError: the address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._listener = socket.create_server((self.host, self.port), family=family)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="pgwire-replay", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def close(self) -> None:
        """Stop listening, close every client connection and wait for the threads."""
        self._stop.set()
        with self._lock:
            for c in self._clients:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=2)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                session = ReplaySession(self.recording, len(self.sessions))
                self.sessions.append(session)
                self._clients.append(client)
            t = threading.Thread(target=self._serve, args=(client, session),
                                 name=f"pgwire-replay-{session.number}", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, client: socket.socket, session: ReplaySession) -> None:
        client.settimeout(0.2)
        with client:
            while not self._stop.is_set() and not session.closed:
                try:
                    data = client.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                out = session.receive_data(data)
                if out:
                    try:
                        client.sendall(out)
                    except OSError:
                        return
