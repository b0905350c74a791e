"""Writing frames to a capture file that Wireshark and tcpdump open.

Frames of one link type become a pcap file with nanosecond timestamps
(magic a1b23c4d), written with scapy's ``RawPcapWriter``. Frames of
several link types cannot share a pcap file (it has one link type), so
they become a pcapng file written with scapy's ``RawPcapNgWriter``, one
Interface Description Block per link type; pcapng timestamps written by
scapy have microsecond resolution.

Specs: "PCAP Capture File Format" and "PCAP Next Generation (pcapng)
Capture File Format" (IETF OPSAWG drafts).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from decimal import Decimal
from itertools import chain

from scapy.utils import RawPcapNgWriter, RawPcapWriter

from pgwire_inspect.capture._model import Frame
from pgwire_inspect.errors import CaptureError

__all__ = ["write_pcap"]

#: Snapshot length written in the pcap header (libpcap's maximum, bytes).
SNAPLEN = 262144

_NS = 1_000_000_000
_US = Decimal(1_000_000)


def _split_ns(ts: float) -> tuple[int, int]:
    """Seconds and nanoseconds of a timestamp, the nanoseconds rounded."""
    sec = int(ts // 1)
    ns = round((ts - sec) * _NS)
    if ns >= _NS:
        sec, ns = sec + 1, ns - _NS
    return sec, ns


def _pcapng_time(ts: float) -> Decimal:
    """A timestamp that scapy's pcapng writer turns into exactly round(ts * 1e6) units.

    The writer computes ``int(timestamp * 1000000)``, which truncates a
    float product like 1670086966.139464 * 1e6 = 1670086966139463.9; an
    exact decimal avoids that off-by-one microsecond.
    """
    return Decimal(round(ts * 1_000_000)) / _US


def write_pcap(path: str | os.PathLike[str], frames: Iterable[Frame]) -> int:
    """Write frames to a capture file, in the order given.

    Frames that all share one link type are written as pcap with
    nanosecond timestamps. If they have several link types the whole file
    is written as pcapng instead, with one interface per link type (in
    order of first appearance) and microsecond timestamps. Each frame's
    captured bytes and original length (``wirelen``) are kept.

    The frames are read once, streaming. If a second link type turns up
    after frames were already written as pcap, the pcap written so far is
    moved aside, read back and rewritten as pcapng with the rest.

    Args:
        path: the file to create or overwrite.
        frames: the frames to write; the file is valid (and empty of
            records) when there are none (link type 1, Ethernet).

    Returns:
        The number of frames written.

    Raises:
        CaptureError: the file cannot be written, or a frame is longer
            than the 262144-byte snapshot length, or a link type does not
            fit the 16-bit pcapng field.
    """
    name = os.fspath(path)
    it = iter(frames)
    first = next(it, None)
    linktype = first.linktype if first is not None else 1
    try:
        writer = RawPcapWriter(name, linktype=linktype, nano=True, snaplen=SNAPLEN)
    except OSError as exc:
        raise CaptureError(f"cannot write {name}: {exc.strerror or exc}") from None
    # scapy keeps a falsy link type unset and then guesses Ethernet: link type 0
    # (BSD loopback NULL) would be written as 1.
    writer.linktype = linktype
    count = 0
    mixed_from: Frame | None = None
    try:
        writer.write_header(None)
        source: Iterator[Frame] = chain([first], it) if first is not None else it
        for frame in source:
            if frame.linktype != linktype:
                mixed_from = frame
                break
            _check(frame, name)
            sec, ns = _split_ns(frame.ts)
            writer.write_packet(
                frame.data, sec=sec, usec=ns, caplen=len(frame.data), wirelen=frame.wirelen
            )
            count += 1
    except OSError as exc:
        raise CaptureError(f"cannot write {name}: {exc.strerror or exc}") from None
    finally:
        writer.close()
    if mixed_from is None:
        return count
    # Several link types: start over as pcapng, reading back what was written.
    from pgwire_inspect.capture.files import open_capture

    aside = name + ".tmp"
    try:
        os.replace(name, aside)
    except OSError as exc:
        raise CaptureError(f"cannot write {name}: {exc.strerror or exc}") from None
    try:
        earlier = open_capture(aside)
        return _write_pcapng(name, chain(earlier, [mixed_from], it))
    finally:
        os.unlink(aside)


def _check(frame: Frame, name: str) -> None:
    if len(frame.data) > SNAPLEN:
        raise CaptureError(
            f"cannot write {name}: frame {frame.no} has {len(frame.data)} bytes, "
            f"more than the {SNAPLEN}-byte snapshot length"
        )


def _write_pcapng(name: str, frames: Iterable[Frame]) -> int:
    """Write frames of several link types as pcapng, one interface per link type."""
    try:
        writer = RawPcapNgWriter(name)
    except OSError as exc:
        raise CaptureError(f"cannot write {name}: {exc.strerror or exc}") from None
    count = 0
    first_linktype: int | None = None
    try:
        for frame in frames:
            _check(frame, name)
            if not 0 <= frame.linktype <= 0xFFFF:
                raise CaptureError(
                    f"cannot write {name}: link type {frame.linktype} does not fit pcapng"
                )
            if first_linktype is None:
                # scapy describes interface 0 (no name) with the writer's link type.
                first_linktype = writer.linktype = frame.linktype
                writer.write_header(None)
            # Each other link type gets its own named interface.
            ifname = None if frame.linktype == first_linktype else f"linktype-{frame.linktype}"
            writer._write_packet(
                frame.data,
                linktype=frame.linktype,
                sec=_pcapng_time(frame.ts),  # type: ignore[arg-type]
                caplen=len(frame.data),
                wirelen=frame.wirelen,
                ifname=ifname.encode() if ifname else None,
            )
            count += 1
    except OSError as exc:
        raise CaptureError(f"cannot write {name}: {exc.strerror or exc}") from None
    finally:
        writer.close()
    return count
