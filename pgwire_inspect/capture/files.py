"""Reading pcap and pcapng capture files into :class:`Frame` objects.

The file formats are read by scapy's raw readers (``RawPcapReader`` and
``RawPcapNgReader``), which hand back each record's bytes and metadata
without dissecting the packet. This module adds what a capture *viewer*
needs around them: a clear one-line :class:`CaptureError` for files that
are not captures, frame numbers and float timestamps, per-frame link types
for pcapng files with several interfaces, gzip-compressed captures, and a
list of problems (a truncated last record, a corrupt block) instead of a
silent stop or a traceback.

Specs: "PCAP Capture File Format" and "PCAP Next Generation (pcapng)
Capture File Format" (IETF OPSAWG drafts, draft-ietf-opsawg-pcap and
draft-ietf-opsawg-pcapng).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from typing import IO, Any, BinaryIO, cast

from scapy.utils import RawPcapNgReader, RawPcapReader

from pgwire_inspect.capture._model import Frame
from pgwire_inspect.capture._streams import (
    _READ_ERRORS,
    MAX_RECORD_LEN,
    _quiet,
    _quietly,
    _read_exactly,
    _Tap,
)
from pgwire_inspect.errors import CaptureError

__all__ = ["MAX_RECORD_LEN", "CaptureFile", "open_capture"]

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "little-endian, microseconds",
    b"\xa1\xb2\xc3\xd4": "big-endian, microseconds",
    b"\x4d\x3c\xb2\xa1": "little-endian, nanoseconds",
    b"\xa1\xb2\x3c\x4d": "big-endian, nanoseconds",
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_HEADER_LEN = 24
_PCAPNG_MIN_SHB_LEN = 28

# Frame is a frozen slotted dataclass whose generated __init__ costs more
# than reading a record; frames are built by filling the slots through their
# member descriptors, which stores the same values in the same slots.
_obj_new = object.__new__
_set_no, _set_ts, _set_linktype, _set_data, _set_wirelen = (
    getattr(Frame, field.name).__set__ for field in dataclasses.fields(Frame)
)


def _frame(no: int, ts: float, linktype: int, data: bytes, wirelen: int) -> Frame:
    """A Frame equal to ``Frame(no, ts, linktype, data, wirelen)``, built faster."""
    frame: Frame = _obj_new(Frame)
    _set_no(frame, no)
    _set_ts(frame, ts)
    _set_linktype(frame, linktype)
    _set_data(frame, data)
    _set_wirelen(frame, wirelen)
    return frame


def _hex_start(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data[:4])


def _source_name(source: str | os.PathLike[str] | BinaryIO) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<stream>"


class CaptureFile:
    """An open pcap or pcapng capture: an iterable of :class:`Frame`.

    Create it with :func:`open_capture`. Iterating reads the file record by
    record (streaming: frames are never all held in memory) and yields
    frames numbered from 1 in file order. A capture opened from a path can
    be iterated again (the file is reopened); one opened from a file object
    is read again only if that object is seekable.

    Iteration never raises for damage inside the file: it stops at the
    first record it cannot read and appends a one-line description to
    :attr:`problems`; every frame before that record is yielded.

    Attributes:
        name: the path, or the file object's ``name``, or ``"<stream>"``.
        format: ``"pcap"`` or ``"pcapng"``.
        compressed: True when the file was gzip-compressed.
        problems: one line per problem met while reading (reset at the
            start of each iteration), e.g. ``"frame 12 is truncated: ..."``.
        frames_read: frames yielded by the last (or current) iteration.

    Raises:
        CaptureError: from iteration only if a second pass is impossible
            (non-seekable file object) or the file vanished between passes.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        raw: IO[bytes],
        owned: bool,
        start: int | None,
    ) -> None:
        self.name = _source_name(source)
        self._source = source
        self._owned = owned
        self._start = start
        self._raw: IO[bytes] | None = raw
        self._gz: gzip.GzipFile | None = None
        self.format = ""
        self.compressed = False
        self.problems: list[str] = []
        self.frames_read = 0
        self._reader: Any = None
        self._tap: _Tap | None = None
        self._direct_base: int | None = None
        self._used = False
        self._open_reader(raw)

    # -- opening -----------------------------------------------------------

    def _open_reader(self, raw: IO[bytes]) -> None:
        try:
            base = raw.tell() if raw.seekable() else None
        except (OSError, AttributeError, ValueError):
            base = None
        try:
            head = _read_exactly(raw, 4)
        except OSError as exc:
            raise CaptureError(f"cannot read {self.name}: {exc}") from None
        if not head:
            raise CaptureError(f"{self.name} is empty")
        stream: IO[bytes] = raw
        if head[:2] == _GZIP_MAGIC:
            packed = _Tap(raw, head, self.name, remember=False)
            self._gz = gzip.GzipFile(fileobj=cast(Any, packed), mode="rb")
            stream = cast(IO[bytes], self._gz)
            self.compressed = True
            try:
                head = _read_exactly(stream, 4)
            except (OSError, EOFError, zlib.error) as exc:
                raise CaptureError(f"{self.name} is not a valid gzip file: {exc}") from None
            if not head:
                raise CaptureError(f"{self.name} is empty (after gzip decompression)")
        if head in _PCAP_MAGICS:
            self.format = "pcap"
            need = _PCAP_HEADER_LEN
        elif head == _PCAPNG_MAGIC:
            self.format = "pcapng"
            need = _PCAPNG_MIN_SHB_LEN
        else:
            raise CaptureError(
                f"{self.name} is not a pcap or pcapng file (starts with {_hex_start(head)})"
            )
        try:
            rest = _read_exactly(stream, need - len(head))
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(f"cannot read {self.name}: {exc}") from None
        header = head + rest
        if len(header) < need:
            what = "pcap file header" if self.format == "pcap" else "pcapng section header block"
            raise CaptureError(
                f"{self.name} is truncated: its {what} needs {need} bytes, "
                f"the file has {len(header)}"
            )
        # A plain seekable pcap file is handed to scapy as it is (the fast
        # path: the end of the file is checked by position); anything else
        # goes through a tap that remembers what scapy read.
        direct = self.format == "pcap" and self._gz is None and base is not None
        tap = _Tap(stream, header, self.name)
        source: Any = tap
        if direct:
            try:
                raw.seek(cast(int, base))
                source = raw
            except (OSError, ValueError):
                direct = False
        cls = RawPcapReader if self.format == "pcap" else RawPcapNgReader
        try:
            with _quiet():
                reader = cls(source)
        except _READ_ERRORS as exc:
            if self.format == "pcap":
                raise CaptureError(f"{self.name}: unreadable pcap file header ({exc})") from None
            raise CaptureError(
                f"{self.name}: malformed pcapng section header block ({exc})"
            ) from None
        self._reader = reader
        self._tap = tap
        self._direct_base = cast(int, base) + _PCAP_HEADER_LEN if direct else None

    def _reopen(self) -> None:
        if isinstance(self._source, (str, os.PathLike)):
            try:
                raw: IO[bytes] = open(self._source, "rb")  # noqa: SIM115
            except OSError as exc:
                raise CaptureError(f"cannot open {self.name}: {exc.strerror}") from None
            self._owned = True
        else:
            raw = self._source
            if self._start is None:
                raise CaptureError(f"{self.name} is not seekable and can be read only once")
            try:
                raw.seek(self._start)
            except OSError as exc:
                raise CaptureError(f"cannot rewind {self.name}: {exc}") from None
        self._raw = raw
        self._gz = None
        self._open_reader(raw)

    # -- reading -----------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        if self._used or self._reader is None:
            self.close()
            self._reopen()
        self._used = True
        self.problems = []
        self.frames_read = 0
        try:
            if self.format == "pcap":
                yield from self._iter_pcap()
            else:
                yield from self._iter_pcapng()
        finally:
            self.close()

    def _iter_pcap(self) -> Iterator[Frame]:
        reader = self._reader
        tap = self._tap
        assert tap is not None
        linktype = reader.linktype & 0xFFFF  # upper bits: FCS length (pcap spec, LinkType)
        scale = 1_000_000_000 if reader.nano else 1_000_000
        read_packet = reader._read_packet
        expected = self._direct_base  # where the next record starts, on the direct path
        no = 0
        while True:
            if expected is None:
                tap.mark()
            try:
                data, meta = _quietly(read_packet)
            except EOFError:
                self._check_pcap_end(no, expected)
                return
            except _READ_ERRORS as exc:
                self._stopped(
                    no, tap.pos if expected is None else expected, str(exc) or type(exc).__name__
                )
                return
            caplen = meta.caplen
            if caplen > MAX_RECORD_LEN:
                self.problems.append(
                    f"record {no + 1} claims {caplen} captured bytes (more than "
                    f"{MAX_RECORD_LEN}): the file is corrupt; stopped reading there"
                )
                return
            if len(data) < caplen:
                self.problems.append(
                    f"frame {no + 1} is truncated: its record holds {caplen} bytes, "
                    f"the file ends after {len(data)}; stopped reading there"
                )
                return
            if expected is not None:
                expected += 16 + caplen
            no += 1
            self.frames_read = no
            yield _frame(no, meta.sec + meta.usec / scale, linktype, data, meta.wirelen)

    def _check_pcap_end(self, frames: int, expected: int | None) -> None:
        """After scapy's EOFError: a clean end, or a truncated record header."""
        assert self._tap is not None
        if expected is None:
            if self._check_stream_error(frames):
                return
            left = len(self._tap.tail())
        else:
            try:
                left = cast(IO[bytes], self._raw).tell() - expected
            except (OSError, ValueError) as exc:
                self._stopped(frames, expected, str(exc))
                return
        if left:
            self.problems.append(
                f"the record header after frame {frames} is truncated "
                f"({left} of 16 bytes); stopped reading there"
            )

    def _iter_pcapng(self) -> Iterator[Frame]:
        reader = self._reader
        tap = self._tap
        assert tap is not None
        read_packet = reader._read_packet
        no = 0
        while True:
            tap.mark()
            try:
                data, meta = _quietly(read_packet)
            except EOFError:
                self._check_pcapng_end(no, reader.endian)
                return
            except _READ_ERRORS as exc:
                self._stopped(no, tap.pos, str(exc) or type(exc).__name__)
                return
            if meta.tshigh is None:  # Simple Packet Block: no timestamp
                ts = 0.0
                if len(data) < meta.wirelen:
                    data = self._spb_data(reader, meta.wirelen, data)
            else:
                units = (meta.tshigh << 32) | meta.tslow
                res = meta.tsresol
                ts = units // res + (units % res) / res
            no += 1
            self.frames_read = no
            yield _frame(no, ts, meta.linktype, data, meta.wirelen)

    def _spb_data(self, reader: Any, wirelen: int, data: bytes) -> bytes:
        """The packet data of the Simple Packet Block just read.

        scapy cuts it to the interface's snapshot length even when that is
        0, which the pcapng spec defines as "no limit"; the block is
        re-read from the bytes the tap kept.
        """
        assert self._tap is not None
        tail = self._tap.tail()
        endian = reader.endian
        off = last = 0
        while off + 12 <= len(tail):
            blocklen = struct.unpack_from(endian + "I", tail, off + 4)[0]
            if blocklen < 12:
                return data
            last = off
            off += blocklen
        blocktype, blocklen = struct.unpack_from(endian + "II", tail, last)
        if blocktype != 3:
            return data
        snaplen = reader.interfaces[0][1] if reader.interfaces else 0
        caplen = min(wirelen, blocklen - 16, snaplen or wirelen)
        return tail[last + 12 : last + 12 + caplen]

    def _check_pcapng_end(self, frames: int, endian: str) -> None:
        """Tell a clean end of file from a truncated, corrupt or rejected block.

        scapy ends iteration with EOFError in every case; the bytes read
        since the last good packet are walked here by block length.
        """
        assert self._tap is not None
        tap = self._tap
        if self._check_stream_error(frames):
            return
        tail = tap.tail()
        start = tap.pos - len(tail)
        off = last = 0
        state = "complete"
        while off < len(tail):
            if len(tail) - off < 12:
                state = "truncated"
                break
            blocktype, blocklen = struct.unpack_from(endian + "II", tail, off)
            if blocktype == 0x0A0D0D0A:  # a new section may switch the byte order
                endian = "<" if tail[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                blocklen = struct.unpack_from(endian + "I", tail, off + 4)[0]
            if blocklen < 12 or blocklen % 4:
                state = "corrupt"
                break
            if off + blocklen > len(tail):
                state = "truncated"
                break
            last = off
            off += blocklen
        if state == "complete" and tap.last_read_len == 0:
            return  # scapy looked for the next block and found the end of the file
        try:
            more = bool(tap.read(1))
        except _READ_ERRORS:
            more = False
        if state == "truncated" and not more:
            self.problems.append(
                f"the pcapng block after frame {frames} is truncated (byte offset "
                f"{start + off}, {len(tail) - off} bytes left in the file); stopped reading there"
            )
        elif state == "complete":
            self.problems.append(
                f"malformed pcapng block after frame {frames} (byte offset {start + last}); "
                f"stopped reading there"
            )
        else:
            self.problems.append(
                f"corrupt pcapng block after frame {frames} (byte offset {start + off}); "
                f"stopped reading there"
            )

    def _check_stream_error(self, frames: int) -> bool:
        """Record an I/O or decompression error met by the tap, if any."""
        assert self._tap is not None
        err = self._tap.error
        if err is None:
            return False
        self.problems.append(
            f"read error after frame {frames} (byte offset {self._tap.pos}): "
            f"{err or type(err).__name__}; stopped reading there"
        )
        return True

    def _stopped(self, frames: int, pos: int, why: str) -> None:
        self.problems.append(
            f"cannot read past frame {frames} (byte offset {pos}): {why}; stopped reading there"
        )

    def position(self) -> int | None:
        """Bytes of the file (as stored, so compressed for gzip) read so far, or None
        when that cannot be told (the file is closed or not seekable); for progress bars."""
        try:
            return self._raw.tell() if self._raw is not None else None
        except (OSError, ValueError, AttributeError):
            return None

    # -- closing -----------------------------------------------------------

    def close(self) -> None:
        """Close the file if this object opened it (idempotent).

        A file object passed to :func:`open_capture` is left open.
        """
        self._reader = None
        self._tap = None
        if self._gz is not None:
            with contextlib.suppress(*_READ_ERRORS):
                self._gz.close()
            self._gz = None
        if self._owned and self._raw is not None:
            self._raw.close()
        self._raw = None

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CaptureFile({self.name!r}, format={self.format!r})"


def open_capture(source: str | os.PathLike[str] | BinaryIO) -> CaptureFile:
    """Open a pcap or pcapng capture file (optionally gzip-compressed).

    Reads and checks the file header at once; the records are read when the
    result is iterated (see :class:`CaptureFile`).

    Args:
        source: a path, or a binary file object open for reading
            (positioned at the start of the capture; it is not closed).

    Returns:
        The open :class:`CaptureFile`. Its frames carry 1-based numbers,
        timestamps in seconds since the epoch, the link type of their
        interface, the captured bytes and the original length.

    Raises:
        CaptureError: the file cannot be opened, is empty, is not a pcap or
            pcapng file (the message quotes its first four bytes), or its
            file header / section header block is truncated or malformed.

    Follows the pcap file format (magic numbers a1b2c3d4 microseconds and
    a1b23c4d nanoseconds, both byte orders; LinkType in the low 16 bits)
    and the pcapng format (Section Header, Interface Description with
    if_tsresol, Enhanced, Simple and obsolete Packet Blocks).
    """
    name = _source_name(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            raw: IO[bytes] = open(source, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CaptureError(f"cannot open {name}: {exc.strerror}") from None
        owned, start = True, None
    else:
        raw, owned = source, False
        try:
            start = source.tell() if source.seekable() else None
        except (OSError, AttributeError, ValueError):
            start = None
    try:
        return CaptureFile(source, raw, owned, start)
    except BaseException:
        if owned:
            raw.close()
        raise
