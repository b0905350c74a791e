"""Run an ORM program while capturing its connection live, then decode what was captured.

The capture starts (its socket open) before the ORM connects, so nothing the
connection sends can be missed; it stops when both directions of that TCP
connection have closed (FIN or RST seen), or after a timeout, never after a
fixed sleep.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .capture import Frame, LiveCapture, RelayCapture, decode_frame
from .conversation import Connection
from .decode import Decoded, decode_frames
from .errors import CaptureError
from .orm import OrmRun, OrmStep, PreparedUrl, run_orm

__all__ = ["LiveResult", "run_live"]


@dataclass
class LiveResult:
    """What a live run produced.

    Attributes:
        run: the ORM side's record (None when the run was interrupted).
        decoded: the decoded capture, the ORM's connection only (every connection
            to the server when the run was interrupted before its port was known).
        frames: the captured frames of the ORM's connection, for --write-pcap (of
            every connection to the server when its port was not learnt).
        closed: False when the connection's close was not seen before the timeout.
        notices: one-line remarks for the user.
        interrupted: the run was stopped by Ctrl-C (SIGINT).
    """

    run: OrmRun | None
    decoded: Decoded
    frames: list[Frame]
    closed: bool
    notices: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def connection(self) -> Connection | None:
        """The ORM's connection on the wire, or None if it was not captured."""
        return self.decoded.connections[0] if self.decoded.connections else None


def _resolve(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError:
        return host


def _cancel_backend(url: PreparedUrl, client_port: int) -> None:
    """Cancel the query running on the connection from ``client_port`` (pg_cancel_backend).

    Uses a separate connection (from another client port, so not part of the view).
    """
    import psycopg

    dsn = url.url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True, sslmode="disable") as c:
            c.execute("select pg_cancel_backend(pid) from pg_stat_activity "
                      "where client_port = %s and pid <> pg_backend_pid()", (client_port,))
    except psycopg.Error:
        pass  # the run is being abandoned anyway


def _is_local(addr: str) -> bool:
    """Whether ``addr`` is this machine (loopback or one of its interfaces' addresses)."""
    try:
        ip = ipaddress.ip_address(addr.split("%")[0])
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    local = {i[4][0] for i in infos}
    with contextlib.suppress(OSError), socket.socket(
            socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((str(ip), 0))  # binding works only to an address of this machine
        return True
    return str(ip) in local


def _open_capture(url: PreparedUrl, method: str, iface: str | None,
                  notices: list[str]) -> tuple[Any, PreparedUrl]:
    """Start the capture; returns it and the URL the ORM must connect to.

    ``method`` "sniff" sniffs the interface, "relay" records through a TCP relay
    on a loopback port, "auto" sniffs when the server is on this machine and
    sniffing is permitted, and relays otherwise (saying so in ``notices``).
    """
    addr = _resolve(url.host)
    if method == "auto" and not _is_local(addr):
        notices.append(f"{url.host} is not on this machine: capturing through a relay on a "
                       "loopback port (--capture sniff to sniff an interface instead)")
        method = "relay"
    if method in ("sniff", "auto"):
        sniffer = LiveCapture(addr, url.port, iface)
        try:
            sniffer.start()
            return sniffer, url
        except CaptureError as exc:
            if method == "sniff":
                raise
            notices.append(f"sniffing is not possible ({exc}); capturing through a relay on a "
                           "loopback port instead")
    relay = RelayCapture(addr, url.port)
    relay.start()
    relayed = replace(url, url=url.url.set(host=relay.listen_host, port=relay.listen_port))
    return relay, relayed


def run_live(url: PreparedUrl, program: Sequence[OrmStep], *, iface: str | None = None,
             close_timeout: float = 5.0, connect_timeout: float = 10,
             capture: str = "auto") -> LiveResult:
    """Run ``program`` on a fresh connection to ``url`` while capturing it.

    Args:
        url: the prepared DSN (TCP, sslmode=disable).
        program: the ORM steps.
        iface: the interface to sniff on; None picks the one that reaches the server.
        close_timeout: seconds to wait for the connection's FINs after the run.
        connect_timeout: seconds the ORM may take to connect.
        capture: "sniff", "relay" or "auto" (see `_open_capture`).

    Returns:
        The `LiveResult`.

    Raises:
        CaptureError: the capture cannot start (no permission, no such interface).
        OrmRunError: the ORM cannot connect or its program cannot run.
    """
    ports: list[int] = []
    notices = list(url.notices)
    cap, orm_url = _open_capture(url, capture, iface, notices)
    closed = False
    box: dict[str, Any] = {}
    interrupted = False
    done = threading.Event()

    def work() -> None:
        try:
            box["run"] = run_orm(orm_url, program, on_connect=ports.append,
                                 connect_timeout=connect_timeout)
        except BaseException as exc:  # handed to the main thread below
            box["error"] = exc
        finally:
            done.set()

    # The ORM runs in a worker thread so that Ctrl-C reaches this thread at once,
    # even while the driver blocks in C waiting for the server.
    worker = threading.Thread(target=work, name="pgwire-orm", daemon=True)
    try:
        worker.start()
        # An Event, not Thread.join: a join interrupted by Ctrl-C can wrongly report
        # the thread as finished afterwards (CPython issue gh-90882).
        try:
            while not done.wait(0.1):
                pass
        except KeyboardInterrupt:
            interrupted = True
            if ports:
                _cancel_backend(url, ports[0])
            done.wait(connect_timeout)
        run: OrmRun | None = box.get("run")
        if "error" in box and not interrupted:
            raise box["error"]
        if run is not None and run.client_port is not None:
            closed = cap.wait_for_close(run.client_port, 1.0 if interrupted else close_timeout)
    finally:
        cap.stop()
    frames = cap.frames()
    client = run.client_port if run is not None else (ports[0] if ports else None)
    if client is not None:  # other programs' connections to the server are not kept
        frames = [f for f in frames if _on_port(f, client)]
    decoded = decode_frames(frames, ports=(url.port,),
                            client_ports=None if client is None else (client,),
                            keep_frames=True)
    if not closed:
        notices.append(f"the connection's close was not seen within {close_timeout:g} s; "
                       "the capture may miss its last packets")
    if interrupted:
        notices.append("interrupted (Ctrl-C): the running query was cancelled; showing what "
                       "was captured until then")
    return LiveResult(run, decoded, frames, closed, notices, interrupted)


def _on_port(frame: Frame, port: int) -> bool:
    """Whether ``frame`` is a TCP segment from or to ``port``."""
    try:
        seg = decode_frame(frame)
    except CaptureError:
        return False
    return seg is not None and port in (seg.sport, seg.dport)
