"""Run an ORM program while capturing its connection live, then decode what was captured.

The capture starts (its socket open) before the ORM connects, so nothing the
connection sends can be missed; it stops when both directions of that TCP
connection have closed (FIN or RST seen), or after a timeout, never after a
fixed sleep.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from .capture import Frame, LiveCapture
from .conversation import Connection
from .decode import Decoded, decode_frames
from .orm import OrmRun, OrmStep, PreparedUrl, run_orm

__all__ = ["LiveResult", "run_live"]


@dataclass
class LiveResult:
    """What a live run produced.

    Attributes:
        run: the ORM side's record.
        decoded: the decoded capture, the ORM's connection only.
        frames: the captured frames of that server (all connections), for --write-pcap.
        closed: False when the connection's close was not seen before the timeout.
        notices: one-line remarks for the user.
    """

    run: OrmRun
    decoded: Decoded
    frames: list[Frame]
    closed: bool
    notices: list[str] = field(default_factory=list)

    @property
    def connection(self) -> Connection | None:
        """The ORM's connection on the wire, or None if it was not captured."""
        return self.decoded.connections[0] if self.decoded.connections else None


def _resolve(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError:
        return host


def run_live(url: PreparedUrl, program: Sequence[OrmStep], *, iface: str | None = None,
             close_timeout: float = 5.0, connect_timeout: float = 10) -> LiveResult:
    """Run ``program`` on a fresh connection to ``url`` while capturing it.

    Args:
        url: the prepared DSN (TCP, sslmode=disable).
        program: the ORM steps.
        iface: the interface to sniff on; None picks the one that reaches the server.
        close_timeout: seconds to wait for the connection's FINs after the run.
        connect_timeout: seconds the ORM may take to connect.

    Returns:
        The `LiveResult`.

    Raises:
        CaptureError: the capture cannot start (no permission, no such interface).
        OrmRunError: the ORM cannot connect or its program cannot run.
    """
    ports: list[int] = []
    cap = LiveCapture(_resolve(url.host), url.port, iface)
    cap.start()
    closed = False
    try:
        run = run_orm(url, program, on_connect=ports.append, connect_timeout=connect_timeout)
        if run.client_port is not None:
            closed = cap.wait_for_close(run.client_port, close_timeout)
    finally:
        cap.stop()
    frames = cap.frames()
    client = run.client_port
    decoded = decode_frames(frames, ports=(url.port,),
                            client_ports=None if client is None else (client,),
                            keep_frames=True)
    notices = list(url.notices)
    if not closed:
        notices.append(f"the connection's close was not seen within {close_timeout:g} s; "
                       "the capture may miss its last packets")
    return LiveResult(run, decoded, frames, closed, notices)
