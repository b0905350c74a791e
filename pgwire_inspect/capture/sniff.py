"""Live capture of the TCP traffic between this machine and one server.

scapy opens the packet socket (``conf.L2listen``: an ``AF_PACKET`` socket
on Linux) and hands back raw bytes with a kernel timestamp
(``recv_raw``); nothing is dissected with scapy. There is no libpcap on
the machines this runs on, so no BPF filter is compiled: each frame goes
through :func:`~pgwire_inspect.capture.links.decode_frame` and only TCP
segments to or from the server's address and port are kept.

On Linux loopback every packet is seen twice, once going out and once
coming in; scapy's ``recv_raw`` does not say which copy is which, so both
are kept and the reassembly drops the duplicate.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import os
import select
import socket
import threading
import time
from types import TracebackType
from typing import Any

from pgwire_inspect.capture._model import TCP_FIN, TCP_RST, Frame
from pgwire_inspect.capture.links import decode_frame
from pgwire_inspect.errors import CaptureError, PgWireError

__all__ = ["RECV_BUFFER", "LiveCapture"]

#: Receive buffer asked for the packet socket, in bytes. A 100,000-row
#: result crosses loopback in a burst of several megabytes; each copy of a
#: frame costs its length plus a few hundred bytes of kernel bookkeeping.
RECV_BUFFER = 64 << 20

_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_MAX_FRAME = 262144  # larger than any frame: loopback's MTU is 65536

# ARPHRD_* (linux/if_arp.h) of the packet socket -> LINKTYPE_* of its frames.
# Linux loopback hands out Ethernet headers with zero MAC addresses.
_ARPHRD_LINKTYPES = {1: 1, 772: 1, 65534: 101}


def _resolve(host: str, port: int) -> list[str]:
    """The IP addresses of ``host`` as text, in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise CaptureError(f"cannot resolve host {host!r}: {exc}") from None
    addrs: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addr = str(ipaddress.ip_address(str(sockaddr[0]).split("%")[0]))
            if addr not in addrs:
                addrs.append(addr)
    if not addrs:
        raise CaptureError(f"cannot resolve host {host!r}: no IPv4 or IPv6 address")
    return addrs


def _local_addresses(conf: Any) -> set[str]:
    """Every IP address of this machine's interfaces (they route over loopback)."""
    found: set[str] = set()
    with contextlib.suppress(Exception):
        for iface in conf.ifaces.values():
            for addrs in iface.ips.values():
                found.update(str(ipaddress.ip_address(a.split("%")[0])) for a in addrs)
    return found


def _pick_interface(conf: Any, addr: str) -> str:
    """The interface on which traffic to ``addr`` travels."""
    ip = ipaddress.ip_address(addr)
    if ip.is_loopback or addr in _local_addresses(conf):
        return str(conf.loopback_name)
    try:
        table = conf.route if ip.version == 4 else conf.route6
        iface = table.route(addr)[0]
    except Exception as exc:  # scapy's routing tables raise various errors
        raise CaptureError(f"no route to {addr}: {exc}") from None
    if not iface:
        raise CaptureError(f"no route to {addr}")
    return str(iface)


class LiveCapture:
    """Capture the TCP traffic to and from one server, in a background thread.

    Typical use::

        with LiveCapture("127.0.0.1", 5432) as cap:   # capturing from here on
            port = run_the_query()                     # the client's local port
            cap.wait_for_close(port, timeout=5.0)
        frames = cap.frames()

    Only TCP segments whose source or destination is (one of the server's
    addresses, ``port``) are kept. Both copies of a loopback packet (out
    and in) are kept; :class:`~pgwire_inspect.reassembly.Reassembler`
    removes duplicates.

    Args:
        host: the server's host name or IP address; a name is resolved at
            construction and all its addresses are matched.
        port: the server's TCP port.
        iface: the interface to listen on. None picks it: the loopback
            interface for loopback addresses and this machine's own
            addresses, otherwise the interface of the route to the first
            address of ``host``.

    Attributes:
        host, port, iface: as given (``iface`` filled in by the choice).
        addresses: the server addresses matched, as text.
        linktype: LINKTYPE of the frames, known after :meth:`start`
            (Linux loopback and Ethernet: 1).

    Raises:
        CaptureError: the host name does not resolve or has no route.
    """

    def __init__(self, host: str, port: int, iface: str | None = None) -> None:
        self.host = host
        self.port = port
        self.addresses = _resolve(host, port)
        self.iface = iface
        self.linktype = 1
        self._addrset = frozenset(self.addresses)
        self._sock: Any = None
        self._thread: threading.Thread | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._stopping = False
        self._alive = False
        self._cond = threading.Condition()
        self._frames: list[Frame] = []
        self._closes: dict[int, set[str]] = {}  # client port -> {"F", "B", "RST"}
        self.error: PgWireError | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> LiveCapture:
        """Open the packet socket and start reading in a daemon thread.

        The socket is open and bound when this returns, so every packet
        sent afterwards is captured (unless the kernel drops it for lack of
        buffer space). Calling it again while running does nothing.

        Returns:
            self.

        Raises:
            CaptureError: "live capture needs root or CAP_NET_RAW: ..." when
                the socket may not be opened; "cannot capture on interface
                X: ..." when the interface does not exist or is down.
        """
        if self._sock is not None:
            return self
        # Imported for their side effects on scapy's conf: the platform's
        # L2listen socket, the link-layer type table, the routing tables.
        for module in ("scapy.arch", "scapy.layers.l2", "scapy.route", "scapy.route6"):
            importlib.import_module(module)
        from scapy.config import conf

        if self.iface is None:
            self.iface = _pick_interface(conf, self.addresses[0])
        try:
            # Not promiscuous: only this machine's own traffic is wanted.
            sock = conf.L2listen(iface=self.iface, promisc=False)
        except PermissionError as exc:
            raise CaptureError(f"live capture needs root or CAP_NET_RAW: {exc}") from None
        except OSError as exc:
            raise CaptureError(f"cannot capture on interface {self.iface!r}: {exc}") from None
        except Exception as exc:  # scapy raises its own errors for unknown interfaces
            raise CaptureError(f"cannot capture on interface {self.iface!r}: {exc}") from None
        try:
            self.linktype = self._socket_linktype(conf, sock)
            self._enlarge_buffer(sock.ins)
            sock.ins.setblocking(False)
            self._wake_r, self._wake_w = os.pipe()
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._stopping = False
        self._alive = True
        self._thread = threading.Thread(
            target=self._run, name=f"LiveCapture {self.iface}", daemon=True
        )
        self._thread.start()
        return self

    @staticmethod
    def _socket_linktype(conf: Any, sock: Any) -> int:
        """The LINKTYPE of the frames a Linux packet socket returns."""
        with contextlib.suppress(OSError, IndexError, TypeError):
            hatype = sock.ins.getsockname()[3]
            if hatype in _ARPHRD_LINKTYPES:
                return _ARPHRD_LINKTYPES[hatype]
        if getattr(sock, "lvl", 2) == 3:
            return 101  # no link-layer header: raw IP
        linktype = conf.l2types.layer2num.get(sock.LL)
        if linktype is None:
            raise CaptureError(f"cannot tell the link type of interface {sock.iface!r}")
        return int(linktype)

    @staticmethod
    def _enlarge_buffer(ins: socket.socket) -> None:
        try:  # as root, beyond net.core.rmem_max
            ins.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECV_BUFFER)
        except OSError:
            with contextlib.suppress(OSError):
                ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)

    def stop(self) -> None:
        """Stop the reading thread and close the socket (idempotent).

        Frames captured so far stay available from :meth:`frames`.
        """
        thread = self._thread
        if thread is not None:
            self._stopping = True
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> LiveCapture:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the reading thread ------------------------------------------------

    def _run(self) -> None:
        sock = self._sock
        recv_raw = sock.recv_raw
        fd = sock.ins.fileno()
        try:
            while not self._stopping:
                ready, _, _ = select.select([fd, self._wake_r], [], [])
                if fd not in ready:
                    continue
                while True:  # drain what the kernel holds
                    try:
                        _cls, data, ts = recv_raw(_MAX_FRAME)
                    except (BlockingIOError, InterruptedError):
                        break
                    if data:
                        self._take(data, ts)
        except Exception as exc:  # the socket failed: record it, wake waiters
            if not self._stopping:
                self.error = CaptureError(f"live capture on {self.iface} failed: {exc}")
        finally:
            with self._cond:
                self._alive = False
                self._cond.notify_all()

    def _take(self, data: bytes, ts: float | None) -> None:
        """Keep one received frame if it is TCP to or from the server."""
        with self._cond:
            no = len(self._frames) + 1
        frame = Frame(no, ts if ts is not None else time.time(), self.linktype, data, len(data))
        try:
            seg = decode_frame(frame)
        except PgWireError:
            return
        if seg is None:
            return
        port, addrs = self.port, self._addrset
        if seg.dport == port and seg.dst in addrs:
            client_port, side = seg.sport, "F"
        elif seg.sport == port and seg.src in addrs:
            client_port, side = seg.dport, "B"
        else:
            return
        with self._cond:
            self._frames.append(frame)
            if seg.flags & (TCP_FIN | TCP_RST):
                seen = self._closes.setdefault(client_port, set())
                seen.add("RST" if seg.flags & TCP_RST else side)
                self._cond.notify_all()

    # -- results -----------------------------------------------------------

    def frames(self) -> list[Frame]:
        """The frames kept so far, numbered 1.. in arrival order.

        Returns:
            A new list (a snapshot; capturing may go on). Each frame has
            the socket's link type (:attr:`linktype`), the kernel's
            receive timestamp in seconds since the epoch, and
            ``wirelen == len(data)``.
        """
        with self._cond:
            return list(self._frames)

    def wait_for_close(self, client_port: int, timeout: float) -> bool:
        """Wait until the connection from ``client_port`` has been closed on the wire.

        Closed means a FIN or RST was seen from both the client and the
        server, or an RST from either (RFC 9293, section 3.6).

        Args:
            client_port: the client's local TCP port of the connection.
            timeout: the longest wait, in seconds.

        Returns:
            True once closed; False on timeout, or when capturing stopped
            or failed first (see :attr:`error`).
        """

        def closed() -> bool:
            seen = self._closes.get(client_port, ())
            return "RST" in seen or ("F" in seen and "B" in seen) or not self._alive

        with self._cond:
            self._cond.wait_for(closed, timeout)
            seen = self._closes.get(client_port, set())
            return "RST" in seen or ("F" in seen and "B" in seen)

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return f"LiveCapture({self.host}:{self.port} on {self.iface}, {state})"
