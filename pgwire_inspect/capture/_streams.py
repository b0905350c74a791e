"""File-object helpers of the capture readers: scapy's warnings kept quiet, a tap
that remembers what scapy read (to say where a damaged file stops), exact reads."""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from typing import IO, Any

from scapy.error import Scapy_Exception

__all__ = ["MAX_RECORD_LEN"]

#: Largest record (bytes) this reader accepts; scapy's pcap reader caps a
#: read at this size, and libpcap's largest snapshot length is 262144.
MAX_RECORD_LEN = 262140

# Exceptions that scapy's readers, struct, gzip and the file object raise on
# bad input. The capture readers never let them out.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    Scapy_Exception,
    EOFError,
    OSError,
    struct.error,
    zlib.error,
    ValueError,
    OverflowError,
    IndexError,
    KeyError,
    TypeError,
)


class _QuietScapy(logging.Filter):
    """Drops scapy's runtime warnings while this thread reads a capture.

    scapy logs "Pcap: packet has been truncated" and similar lines to
    stderr; this module reports them as :attr:`CaptureFile.problems`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "active", False)


_QUIET = _QuietScapy()
logging.getLogger("scapy.runtime").addFilter(_QUIET)


def _quietly(read_packet: Any) -> Any:
    """Call a scapy reader's ``_read_packet`` with its warnings silenced."""
    local = _QUIET.local
    prev = getattr(local, "active", False)
    local.active = True
    try:
        return read_packet(MAX_RECORD_LEN)
    finally:
        local.active = prev


class _quiet:
    """Context manager: silence scapy's runtime logger in this thread."""

    def __enter__(self) -> None:
        self.prev = getattr(_QUIET.local, "active", False)
        _QUIET.local.active = True

    def __exit__(self, *exc: object) -> None:
        _QUIET.local.active = self.prev


class _Tap:
    """A read-only byte stream that replays a prefix, counts and remembers.

    scapy's readers read the magic number themselves, so the bytes this
    module has already looked at are handed back first. The tap counts the
    bytes delivered (``pos``), keeps references to the chunks delivered
    since the last :meth:`mark` (to tell a clean end of file from a
    truncated record), and remembers the size of the last read.
    """

    def __init__(self, raw: IO[bytes], prefix: bytes, name: str, remember: bool = True) -> None:
        self.raw = raw
        self.prefix = prefix
        self.name = name
        self.remember = remember
        self.pos = 0
        self.since_mark: list[bytes] = []
        self.last_read_len = -1
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._read(n)
        except _READ_ERRORS as exc:
            self.error = exc
            raise
        self.pos += len(data)
        self.last_read_len = len(data)
        if data and self.remember:
            self.since_mark.append(data)
        return data

    def _read(self, n: int) -> bytes:
        if n is None or n < 0:
            data = self.prefix + self.raw.read()
            self.prefix = b""
            return data
        if self.prefix:
            data = self.prefix[:n]
            self.prefix = self.prefix[n:]
            if len(data) < n:
                data += _read_exactly(self.raw, n - len(data))
            return data
        if n > _CHUNK:
            # A claimed length (a pcapng block's, say) is not trusted: read what is
            # there, a chunk at a time, instead of allocating the claim.
            return _read_exactly(self.raw, n)
        data = self.raw.read(n)
        if len(data) < n and data:  # a pipe or socket may return less: read on
            data += _read_exactly(self.raw, n - len(data))
        return data

    def mark(self) -> None:
        self.since_mark = []

    def tail(self) -> bytes:
        return b"".join(self.since_mark)

    def close(self) -> None:
        """Does nothing: the underlying stream is closed by its owner."""


#: Reads larger than this are made in chunks of this size (bytes).
_CHUNK = 1 << 20


def _read_exactly(raw: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes (fewer at the end of the stream), read at most `_CHUNK` at a time."""
    chunks = []
    while n > 0:
        chunk = raw.read(min(n, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
