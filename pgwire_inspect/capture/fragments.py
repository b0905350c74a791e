"""IP fragment reassembly: fragmented IPv4 and IPv6 datagrams back into whole frames.

:func:`~pgwire_inspect.capture.links.decode_frame` reads one frame at a
time: it returns None for a fragment that is not the first, and for a
first fragment it reads the TCP header and the part of the payload that
fragment carries. A :class:`FragmentReassembler` sits before it: frames
that are not fragments pass through unchanged, fragments are held until
their datagram is complete, and then one synthetic frame carries the
whole datagram, so ``decode_frame`` reads it as an ordinary packet.
Datagrams that never complete are reported in
:attr:`FragmentReassembler.problems` and never passed on half-read.

Specs: RFC 791 (IPv4 fragmentation and reassembly), RFC 8200 section 4.5
(the IPv6 Fragment header; reassembly), RFC 1071 (the Internet checksum),
RFC 6946 (atomic fragments, passed through), RFC 5722 (overlapping
fragments are a problem to report).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pgwire_inspect.capture._model import Frame
from pgwire_inspect.capture.links import _LINKS

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DATAGRAMS",
    "DEFAULT_TIMEOUT",
    "FragmentReassembler",
    "internet_checksum",
]

#: Datagrams held at once before the oldest is given up.
DEFAULT_MAX_DATAGRAMS = 1024
#: Fragment payload bytes held at once (4 MiB, Linux's ipfrag_high_thresh).
DEFAULT_MAX_BYTES = 4 << 20
#: Capture seconds a datagram may wait for its fragments (Linux's ipfrag_time).
DEFAULT_TIMEOUT = 30.0

_IPV6_SKIPPABLE = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_MAX_IP_LEN = 65535


def internet_checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071).

    Args:
        data: the bytes to sum as big-endian 16-bit words; an odd length
            is padded with one zero byte.

    Returns:
        The one's complement of the one's complement sum, 0..0xFFFF, to
        store in a header's checksum field (that field zero while summing).
        Over a header that already holds its right checksum, the result is 0.
    """
    if len(data) % 2:
        data += b"\0"
    n = int.from_bytes(data, "big")
    # 2**16 is 1 modulo 0xFFFF, so the sum of the 16-bit words folds to n % 0xFFFF;
    # a non-zero multiple of 0xFFFF sums to 0xFFFF (one's complement "negative zero").
    total = n % 0xFFFF if n else 0
    if n and not total:
        total = 0xFFFF
    return ~total & 0xFFFF


@dataclass(slots=True)
class _Datagram:
    """Fragments of one datagram, received so far."""

    name: str  # "IPv4 fragments of 10.0.0.1 > 10.0.0.2 id 0x1234"
    version: int
    first_ts: float
    linktype: int = 0
    link: bytes | None = None  # link header of the offset-0 fragment
    header: bytes | None = None  # IP header (IPv6: with the unfragmentable part)
    v6_next_at: int = 0  # IPv6: index in header of the Next Header byte to patch
    v6_next: int = 0  # IPv6: the Next Header value of the fragmentable part
    total: int | None = None  # payload length, known once the last fragment came
    chunks: list[tuple[int, bytes]] = field(default_factory=list)  # sorted, disjoint
    held: int = 0
    overlap_reported: bool = False

    def covered(self) -> int:
        """Payload bytes held below ``total`` (all held bytes when it is unknown)."""
        if self.total is None:
            return self.held
        return sum(max(0, min(s + len(d), self.total) - s) for s, d in self.chunks)


class FragmentReassembler:
    """Reassembles fragmented IPv4 and IPv6 datagrams among captured frames.

    Feed frames in capture order to :meth:`feed`, or pass them all through
    :meth:`reassemble`. A frame that is not a fragment comes back as it is
    (the same object). Fragments are held, keyed as the specs say (IPv4:
    source, destination, protocol and identification; IPv6: source,
    destination and identification), until their datagram is complete;
    then one synthetic frame is returned: the link header of the first
    fragment (offset 0), the IP header of that fragment with the lengths
    fixed (IPv4: total length, MF and fragment offset cleared, DF kept,
    header checksum recomputed; IPv6: payload length, Fragment header
    removed and the Next Header before it pointing at what it carried),
    then the payload. It has the number and timestamp of the frame that
    completed it.

    Overlapping fragments: the bytes received first are kept and the
    overlap is reported once per datagram; an exact repeat of a fragment
    (a loopback capture sees each packet twice) is dropped silently, also
    after its datagram was completed. Atomic IPv6 fragments (offset 0, no
    more fragments) pass through: ``decode_frame`` reads them.

    Memory is bounded: at most ``max_datagrams`` datagrams and
    ``max_bytes`` payload bytes are held; beyond that, and for datagrams
    older than ``timeout`` capture seconds, the oldest are given up and
    reported. The completed datagrams kept to recognise repeats obey the
    same limits, and are forgotten after ``timeout`` seconds.

    Args:
        max_datagrams: datagrams held at once.
        max_bytes: fragment payload bytes held at once.
        timeout: seconds of capture time (frame timestamps) a datagram may
            wait for its missing fragments.

    Attributes:
        problems: one line per datagram given up or odd fragment, e.g.
            ``"IPv4 fragments of 10.0.0.1 > 10.0.0.2 id 0x1234 incomplete:
            1480 of 3000 bytes"``.
        reassembled: datagrams completed so far.
        duplicates: repeated fragments dropped.
    """

    def __init__(
        self,
        *,
        max_datagrams: int = DEFAULT_MAX_DATAGRAMS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.problems: list[str] = []
        self.reassembled = 0
        self.duplicates = 0
        self._pending: dict[tuple[object, ...], _Datagram] = {}
        self._held = 0
        # Completed datagrams, to drop repeats of their fragments: key -> (ts, payload).
        self._done: dict[tuple[object, ...], tuple[float, bytes]] = {}
        self._done_bytes = 0
        self._now = float("-inf")

    # -- public ------------------------------------------------------------

    def feed(self, frame: Frame) -> Frame | None:
        """Take the next frame of the capture.

        Args:
            frame: a captured frame, in capture order.

        Returns:
            ``frame`` itself when it is not an IP fragment (or cannot be
            read as IP at all: :func:`decode_frame` has the last word on
            those); None when it is a fragment held (or a repeat dropped);
            the synthetic frame of the whole datagram when this fragment
            completed it.
        """
        link = _LINKS.get(frame.linktype)
        data = frame.data
        where = link(data) if link is not None else None
        if where is None:
            return frame
        off, version = where
        if frame.ts > self._now:
            self._now = frame.ts
            self._expire()
        if version == 4:
            return self._feed_v4(frame, off)
        return self._feed_v6(frame, off)

    def finish(self) -> None:
        """End of the capture: report every datagram still incomplete, and forget them."""
        for key in list(self._pending):
            self._give_up(key, "")
        self._done.clear()
        self._done_bytes = 0

    def reassemble(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """Pass frames through :meth:`feed`, then :meth:`finish` at the end.

        Args:
            frames: frames in capture order.

        Yields:
            Every frame that is not a fragment, unchanged, and one
            synthetic frame per reassembled datagram, in the order they
            complete.
        """
        for frame in frames:
            out = self.feed(frame)
            if out is not None:
                yield out
        self.finish()

    @property
    def pending(self) -> int:
        """Datagrams waiting for fragments."""
        return len(self._pending)

    # -- IPv4 --------------------------------------------------------------

    def _feed_v4(self, frame: Frame, off: int) -> Frame | None:
        data = frame.data
        if len(data) < off + 20 or data[off] >> 4 != 4:
            return frame
        frag = (data[off + 6] << 8) | data[off + 7]
        if not frag & 0x3FFF:  # MF clear, offset 0: not a fragment
            return frame
        ihl = (data[off] & 0x0F) * 4
        total = (data[off + 2] << 8) | data[off + 3]
        if ihl < 20 or total < ihl or len(data) < off + ihl:
            return frame  # malformed: left to decode_frame
        payload = data[off + ihl : off + total]
        declared = total - ihl
        src, dst, proto = data[off + 12 : off + 16], data[off + 16 : off + 20], data[off + 9]
        ident = (data[off + 4] << 8) | data[off + 5]
        key: tuple[object, ...] = (4, src, dst, proto, ident)
        start = (frag & 0x1FFF) * 8
        more = bool(frag & 0x2000)
        if self._repeat(key, start, payload, declared):
            return None
        dg = self._pending.get(key)
        if dg is None:
            name = (
                f"IPv4 fragments of {socket.inet_ntoa(src)} > {socket.inet_ntoa(dst)} "
                f"id 0x{ident:04x}"
            )
            dg = self._pending[key] = _Datagram(name, 4, frame.ts)
        if start == 0 and dg.header is None:
            dg.linktype = frame.linktype
            dg.link = data[:off]
            dg.header = data[off : off + ihl]
        return self._add(key, dg, frame, start, payload, declared, more)

    # -- IPv6 --------------------------------------------------------------

    def _feed_v6(self, frame: Frame, off: int) -> Frame | None:
        data = frame.data
        if len(data) < off + 40 or data[off] >> 4 != 6:
            return frame
        plen = (data[off + 4] << 8) | data[off + 5]
        end = off + 40 + plen
        nxt, next_at, pos = data[off + 6], off + 6, off + 40
        while nxt in _IPV6_SKIPPABLE:
            if len(data) < pos + 8:
                return frame
            nxt, next_at, pos = data[pos], pos, pos + ((data[pos + 1] + 1) << 3)
        if nxt != _IPV6_FRAGMENT or len(data) < pos + 8 or not plen or end < pos + 8:
            return frame
        fo = (data[pos + 2] << 8) | data[pos + 3]
        if not fo & 0xFFF9:  # offset 0 and M clear: an atomic fragment (RFC 6946)
            return frame
        ident = int.from_bytes(data[pos + 4 : pos + 8], "big")
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
        key: tuple[object, ...] = (6, src, dst, ident)
        start = (fo >> 3) * 8
        more = bool(fo & 1)
        payload = data[pos + 8 : end]
        declared = end - pos - 8
        if self._repeat(key, start, payload, declared):
            return None
        dg = self._pending.get(key)
        if dg is None:
            name = (
                f"IPv6 fragments of {socket.inet_ntop(socket.AF_INET6, src)} > "
                f"{socket.inet_ntop(socket.AF_INET6, dst)} id 0x{ident:08x}"
            )
            dg = self._pending[key] = _Datagram(name, 6, frame.ts)
        if start == 0 and dg.header is None:
            dg.linktype = frame.linktype
            dg.link = data[:off]
            dg.header = data[off:pos]
            dg.v6_next_at = next_at - off
            dg.v6_next = data[pos]
        return self._add(key, dg, frame, start, payload, declared, more)

    # -- common ------------------------------------------------------------

    def _repeat(self, key: tuple[object, ...], start: int, payload: bytes, declared: int) -> bool:
        """Whether this fragment repeats one of a datagram completed recently."""
        done = self._done.get(key)
        if done is None:
            return False
        whole = done[1]
        if len(payload) == declared and whole[start : start + len(payload)] == payload:
            self.duplicates += 1
            return True
        del self._done[key]  # the identification was reused for a new datagram
        self._done_bytes -= len(whole)
        return False

    def _add(
        self,
        key: tuple[object, ...],
        dg: _Datagram,
        frame: Frame,
        start: int,
        payload: bytes,
        declared: int,
        more: bool,
    ) -> Frame | None:
        if not more:
            end = start + declared
            if dg.total is None:
                dg.total = end
            elif dg.total != end:
                self.problems.append(
                    f"{dg.name}: frame {frame.no} ends the datagram at byte {end}, an earlier "
                    f"fragment at byte {dg.total}; the earlier one is kept"
                )
        self._insert(dg, frame, start, payload)
        if len(payload) < declared:
            # The capture cut this fragment: its last bytes never come.
            self.problems.append(
                f"{dg.name}: frame {frame.no} holds {len(payload)} of its {declared} bytes "
                f"(cut by the capture)"
            )
        if (
            dg.total is not None
            and dg.header is not None
            and dg.held >= dg.total  # cheap first: the held chunks are disjoint
            and dg.covered() == dg.total
        ):
            return self._complete(key, dg, frame)
        self._bound()
        return None

    def _insert(self, dg: _Datagram, frame: Frame, start: int, payload: bytes) -> None:
        """Keep the parts of [start, start + len) that no held fragment covers."""
        end = start + len(payload)
        pieces: list[tuple[int, bytes]] = []
        cur = start
        overlap = False
        for s, d in dg.chunks:
            e = s + len(d)
            if e <= cur or s >= end:
                continue
            overlap = True
            if s > cur:
                pieces.append((cur, payload[cur - start : s - start]))
            cur = max(cur, e)
        if cur < end:
            pieces.append((cur, payload[cur - start :]))
        if overlap:
            if any(s == start and d == payload for s, d in dg.chunks):
                self.duplicates += 1  # an exact repeat
            elif not dg.overlap_reported:
                dg.overlap_reported = True
                self.problems.append(
                    f"{dg.name}: frame {frame.no} overlaps bytes held already "
                    f"(bytes {start}-{end}); the bytes received first are kept"
                )
        for piece in pieces:
            dg.chunks.append(piece)
            dg.held += len(piece[1])
            self._held += len(piece[1])
        if pieces:
            dg.chunks.sort(key=lambda c: c[0])

    def _complete(self, key: tuple[object, ...], dg: _Datagram, frame: Frame) -> Frame | None:
        del self._pending[key]
        self._held -= dg.held
        assert dg.total is not None and dg.header is not None and dg.link is not None
        payload = b"".join(d for _s, d in dg.chunks)[: dg.total]
        header = bytearray(dg.header)
        if dg.version == 4:
            length = len(header) + len(payload)
            if length > _MAX_IP_LEN:
                self.problems.append(
                    f"{dg.name} reassemble to {length} bytes, more than the "
                    f"{_MAX_IP_LEN} an IPv4 datagram may have; dropped"
                )
                return None
            header[2:4] = length.to_bytes(2, "big")
            header[6:8] = ((header[6] & 0x40) << 8).to_bytes(2, "big")  # keep DF only
            header[10:12] = b"\0\0"
            header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
        else:
            length = len(header) - 40 + len(payload)
            if length > _MAX_IP_LEN:
                self.problems.append(
                    f"{dg.name} reassemble to a payload of {length} bytes, more than the "
                    f"{_MAX_IP_LEN} an IPv6 packet may have; dropped"
                )
                return None
            header[4:6] = length.to_bytes(2, "big")
            header[dg.v6_next_at] = dg.v6_next
        self.reassembled += 1
        self._done[key] = (self._now, payload)
        self._done_bytes += len(payload)
        while len(self._done) > self.max_datagrams or self._done_bytes > self.max_bytes:
            self._forget_oldest_done()
        data = dg.link + bytes(header) + payload
        return Frame(frame.no, frame.ts, dg.linktype, data, len(data))

    def _give_up(self, key: tuple[object, ...], why: str) -> None:
        dg = self._pending.pop(key)
        self._held -= dg.held
        have = dg.covered()
        if dg.total is not None:
            what = f"{have} of {dg.total} bytes"
            if dg.header is None:
                what += ", the first fragment is missing"
        else:
            what = f"{have} bytes, the last fragment is missing"
        self.problems.append(f"{dg.name} incomplete: {what}{why}")

    def _expire(self) -> None:
        """Give up datagrams older than the timeout; forget old completed ones."""
        limit = self._now - self.timeout
        # Datagrams are held in order of their first fragment: the oldest first.
        while self._pending:
            key = next(iter(self._pending))
            if self._pending[key].first_ts >= limit:
                break
            self._give_up(key, f" after {self.timeout:g} s")
        while self._done and next(iter(self._done.values()))[0] < limit:
            self._forget_oldest_done()

    def _forget_oldest_done(self) -> None:
        first = next(iter(self._done))
        self._done_bytes -= len(self._done.pop(first)[1])

    def _bound(self) -> None:
        """Give up the oldest datagrams while more are held than allowed."""
        while self._pending and (
            len(self._pending) > self.max_datagrams or self._held > self.max_bytes
        ):
            key = next(iter(self._pending))
            if len(self._pending) > self.max_datagrams:
                why = f" (more than {self.max_datagrams} datagrams waiting)"
            else:
                why = f" (more than {self.max_bytes} fragment bytes waiting)"
            self._give_up(key, why)
