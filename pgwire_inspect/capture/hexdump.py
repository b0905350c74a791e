"""Frames from hex dump text: Wireshark, tcpdump, od, hexdump and xxd output.

A hex dump prints each packet as lines of ``offset  hex bytes  [ASCII]``.
:func:`read_hexdump` turns such text back into :class:`Frame` objects, one
per dump block, so that a dump pasted from Wireshark or a classroom
handout goes through the same decoder as a capture file. Formats read:

- Wireshark "Copy as Hex Dump", tshark ``-x`` and "Export Packet
  Dissections" as plain text: ``0000  45 00 00 34 ...   E..4...`` (two
  or three spaces between the parts, or one; ``0000:`` also works).
  Wireshark's ``Frame (74 bytes):`` labels are read too; the extra data
  sources it prints after them (``Reassembled TCP (3000 bytes):``) are not
  frames and are skipped.
- ``tcpdump -x``, ``-xx``, ``-X`` and ``-XX``: ``\\t0x0000:  4500 0034 ...``
  in groups of two bytes, with or without the ASCII column. The packet
  lines tcpdump prints before each dump give the frame's timestamp.
- ``od -Ax -tx1`` (and ``hexdump -C``, ``xxd``): ``000000 45 00 00 34 ...``
  ending with a line that holds only the final offset; a ``*`` line
  (repeated lines left out) is expanded.

The ASCII column is never read as hex, even where it looks like hex
(``cafe``, ``00``): the offset of the next line says how many bytes a line
holds, and the last line of a block takes only the hex groups that sit in
the columns where the hex groups of the full lines sit, and whose trailing
text, if any, is an ASCII rendering of them.

Specs: tcpdump(1) (``-x``/``-X`` output), Wireshark's ``epan/print.c``
(``print_hex_data_buffer``), od(1) (POSIX), RFC 791 and RFC 8200 (the IP
headers checked when guessing the link type).
"""

from __future__ import annotations

import calendar
import re
import struct
from collections import Counter
from dataclasses import dataclass, field

from pgwire_inspect.capture._model import Frame
from pgwire_inspect.capture.fragments import internet_checksum
from pgwire_inspect.errors import CaptureError

__all__ = ["guess_linktype", "looks_like_hexdump", "read_hexdump"]

# An offset: optional "0x", hex digits, optional ":"; then blank or the end.
_OFFSET = re.compile(r"[ \t]*(0[xX])?([0-9A-Fa-f]+)(:?)(?=[ \t]|$)")
_TOKEN = re.compile(r"\S+")
# Hex groups after the offset: one byte each ("45 00"), or two bytes each
# ("4500 003c", tcpdump and xxd) with maybe a last group of one byte.
_RUN_1 = re.compile(r"(?:[ \t]+[0-9A-Fa-f]{2}(?=[ \t]|$))+")
_RUN_2 = re.compile(r"(?:[ \t]+[0-9A-Fa-f]{4}(?=[ \t]|$))+(?:[ \t]+[0-9A-Fa-f]{2}(?=[ \t]|$))?")
# tcpdump packet lines: "-tttt" date and time, "-tt" seconds since the
# epoch, the default time of day. Only at the start of a line.
_TS_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(\.\d+)?\s+\S")
_TS_EPOCH = re.compile(r"(\d{9,11})(\.\d+)?\s+\S")
_TS_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)(\.\d+)?\s+\S")
# Wireshark's data source label: "Frame (74 bytes):", "Reassembled TCP (3000 bytes):".
_SOURCE_LABEL = re.compile(r"(\S.*?) \((\d+) bytes?\):\s*$")
_DELIMITERS = (("|", "|"), (">", "<"))
_DAY = 86400.0
_SNIFF_LEN = 8192

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")

#: LINKTYPE_* values :func:`guess_linktype` returns.
_ETHERNET, _NULL, _RAW, _LINUX_SLL = 1, 0, 101, 113


@dataclass(slots=True)
class _Line:
    """One dump line: its offset, its leading hex groups, and the text after them."""

    lineno: int
    offset: int
    text: str
    start: int  # column where the text after the offset begins
    data: bytes  # the bytes of all the leading hex groups (ASCII that looks like hex too)
    width: int  # bytes per group: 1 ("45 00"), 2 ("4500"; the last may hold 1)
    repeat: bool = False  # a "*" line follows: this line repeats up to the next offset
    _tokens: list[tuple[int, str]] | None = None
    _ok: list[int] | None = None

    @property
    def groups(self) -> int:
        return -(-len(self.data) // self.width)

    def size(self, k: int) -> int:
        """Bytes in the first ``k`` hex groups."""
        return min(k * self.width, len(self.data))

    def tokens(self) -> list[tuple[int, str]]:
        """(start column, text) of every whitespace-separated token after the offset."""
        if self._tokens is None:
            self._tokens = [(t.start(), t.group()) for t in _TOKEN.finditer(self.text, self.start)]
        return self._tokens

    def rest(self, k: int) -> str:
        """The text after the first ``k`` tokens."""
        tokens = self.tokens()
        return "" if k >= len(tokens) else self.text[tokens[k][0] :]

    def ok_counts(self) -> list[int]:
        """The group counts k after which the text is empty or an ASCII column of k groups."""
        if self._ok is not None:
            return self._ok
        tokens, data = self.tokens(), self.data
        # Characters (whitespace left out) after each token, and non-space
        # bytes in each prefix: an ASCII column has as many (two more with
        # delimiters) before it is compared character by character.
        after = [0] * (len(tokens) + 1)
        for i in range(len(tokens) - 1, -1, -1):
            after[i] = after[i + 1] + len(tokens[i][1])
        ok: list[int] = []
        for k in range(1, self.groups + 1):
            total = self.size(k)
            shown = total - data.count(0x20, 0, total)
            chars = after[k]
            if not chars or (
                chars in (shown, shown + 2) and _rendering_ok(self.rest(k), data[:total])
            ):
                ok.append(k)
        self._ok = ok
        return ok


@dataclass(slots=True)
class _Block:
    """The lines of one frame's dump, with what the text says around them."""

    lines: list[_Line] = field(default_factory=list)
    end: int | None = None  # the final offset, from od's last line or a "(N bytes)" label
    ts: float | None = None
    skip: bool = False  # a Wireshark data source that is not the frame


def _rendering_ok(text: str, data: bytes) -> bool:
    """Whether ``text`` is an ASCII column for ``data`` (printable bytes as is, others '.')."""
    text = "".join(text.split())
    for left, right in _DELIMITERS:
        if len(text) >= 2 and text[0] == left and text[-1] == right:
            text = text[1:-1]
            break
    shown = [b for b in data if b != 0x20]  # spaces vanish with the whitespace
    if len(text) != len(shown):
        return False
    for ch, b in zip(text, shown, strict=True):
        if ch == "." or ord(ch) > 0x7F:
            continue
        if not 0x20 < b < 0x7F or ch != chr(b):
            return False
    return True


def _parse_dump_line(lineno: int, text: str) -> _Line | None:
    """A dump line (offset, hex groups, optional ASCII), or None for any other line."""
    m = _OFFSET.match(text)
    if m is None:
        return None
    prefix, digits = m.group(1), m.group(2)
    if not prefix and len(digits) < 4:
        return None
    start = m.end()
    run = _RUN_2.match(text, start)
    width = 2
    if run is None:
        run = _RUN_1.match(text, start)
        width = 1
    if run is None:
        if text[start:].strip():
            return None  # not hex after the offset
        return _Line(lineno, int(digits, 16), text, start, b"", 1)  # od's last line
    line = _Line(lineno, int(digits, 16), text, start, bytes.fromhex(run.group()), width)
    # The common cases first: nothing after the hex groups, or an ASCII
    # column that does not look like hex.
    rest = text[run.end() :]
    if not rest.strip() or _rendering_ok(rest, line.data):
        return line
    if not line.ok_counts():
        return None  # trailing text that is no ASCII column: not a dump line
    return line


#: The largest frame a dump may describe: pcap's largest record (bytes).
_MAX_FRAME_BYTES = 262144


def _header_ts(text: str, last: float | None) -> float | None:
    """The timestamp of a tcpdump packet line, or None when ``text`` is not one.

    ``-tttt`` dates are read as UTC (tcpdump prints local time and does not
    say which zone); a bare time of day gives seconds since midnight, with
    a day added when it goes back by more than half a day (midnight passed).
    """
    if text[:1].isspace():
        return None
    m = _TS_DATE.match(text)
    if m:
        y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
        frac = float(m.group(7) or 0.0)
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 62):
            return None  # not a real date: not a timestamp after all
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + frac
    m = _TS_EPOCH.match(text)
    if m:
        return int(m.group(1)) + float(m.group(2) or 0.0)
    m = _TS_TIME.match(text)
    if m:
        h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3))
        ts = h * 3600 + mi * 60 + s + float(m.group(4) or 0.0)
        if last is not None:
            while ts < last - _DAY / 2:
                ts += _DAY
        return ts
    return None


def _split_blocks(text: str) -> list[_Block]:
    """Group the dump lines of ``text`` into blocks, one per frame."""
    blocks: list[_Block] = []
    cur: _Block | None = None
    pending_ts: float | None = None
    pending_label: tuple[str, int] | None = None
    last_ts: float | None = None

    def close() -> None:
        nonlocal cur
        if cur is not None and cur.lines:
            blocks.append(cur)
        cur = None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line_text = raw.expandtabs()
        stripped = line_text.strip()
        if not stripped:
            close()
            continue
        if stripped == "*":
            if cur is not None and cur.lines:
                cur.lines[-1].repeat = True
            continue
        line = _parse_dump_line(lineno, line_text)
        if line is None:
            label = _SOURCE_LABEL.match(stripped)
            if label:
                close()
                pending_label = (label.group(1), int(label.group(2)))
                continue
            ts = _header_ts(line_text, last_ts)
            if ts is not None:
                close()
                pending_ts = last_ts = ts
            continue
        if not line.data:  # od's final offset
            if cur is not None and cur.lines and line.offset > cur.lines[-1].offset:
                cur.end = line.offset
                close()
            continue
        if cur is not None and cur.lines and line.offset == 0:
            close()
        if cur is None:
            cur = _Block(ts=pending_ts)
            if pending_label is not None:
                name, length = pending_label
                cur.skip = name != "Frame"
                cur.end = length
            pending_ts = pending_label = None
        if not cur.lines:
            if line.offset != 0:
                raise CaptureError(
                    f"line {lineno}: hex dump starts at offset 0x{line.offset:04x}, not 0"
                )
        elif line.offset <= cur.lines[-1].offset:
            raise CaptureError(
                f"line {lineno}: offset 0x{line.offset:04x} does not follow "
                f"0x{cur.lines[-1].offset:04x}"
            )
        cur.lines.append(line)
    close()
    return blocks


def _take(line: _Line, count: int, next_line: _Line | None, next_offset: int) -> bytes:
    """The first ``count`` bytes of the hex groups of ``line``."""
    data = line.data
    if count <= len(data) and (count % line.width == 0 or count == len(data)):
        return data[:count]
    where = next_line.lineno if next_line is not None else line.lineno
    raise CaptureError(
        f"line {where}: offset 0x{next_offset:04x} does not follow 0x{line.offset:04x}"
    )


def _last_line_count(line: _Line, full: list[_Line], width: int | None) -> int:
    """How many hex groups the last line of a block holds (its count is not given)."""
    ok = list(line.ok_counts())
    tokens = line.tokens()
    if full and width is not None:
        # Hex groups sit in the columns the full lines use for theirs; the
        # ASCII column starts further right. When the full lines have an
        # ASCII column, so has the last line. (The first and the last full
        # line stand for all: every tool lays its lines out alike.)
        k_full = -(-width // full[0].width)
        samples = (full[0], full[-1])
        max_col = max(ln.tokens()[k_full - 1][0] for ln in samples)
        ok = [k for k in ok if tokens[k - 1][0] <= max_col and line.size(k) <= width]
        if any(ln.rest(k_full).strip() for ln in samples):
            ok = [k for k in ok if line.rest(k).strip()]
        if not ok:
            raise CaptureError(
                f"line {line.lineno}: no hex bytes in the columns of the lines above"
            )
        return max(ok)
    # A one-line block: prefer an ASCII column set off by a gap at least as
    # wide as the gaps between the hex groups.
    for k in sorted(ok, reverse=True):
        if not line.rest(k).strip():
            continue
        gaps = [tokens[i][0] - tokens[i - 1][0] - len(tokens[i - 1][1]) for i in range(1, k + 1)]
        if gaps[-1] >= max(gaps[:-1], default=1):
            return k
    return max(ok)


def _block_bytes(block: _Block) -> bytes:
    """The bytes of one block, checked against its offsets."""
    lines = block.lines
    out: list[bytes] = []
    width: int | None = None
    full: list[_Line] = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        end = nxt.offset if nxt is not None else block.end
        if end is None:  # the last line, with no final offset
            out.append(line.data[: line.size(_last_line_count(line, full, width))])
            break
        delta = end - line.offset
        if delta <= 0:
            raise CaptureError(
                f"line {line.lineno}: hex dump is longer than the {block.end} bytes its label says"
            )
        if line.repeat:
            size = width if width is not None else line.size(max(line.ok_counts()))
            if delta > _MAX_FRAME_BYTES:
                raise CaptureError(
                    f"line {line.lineno}: a repeated line would make a frame of {delta} bytes "
                    f"(a frame holds at most {_MAX_FRAME_BYTES})")
            if size <= 0 or delta % size:
                where = nxt.lineno if nxt is not None else line.lineno
                raise CaptureError(
                    f"line {where}: offset 0x{end:04x} does not follow 0x{line.offset:04x} "
                    f"and the repeated lines before it"
                )
            out.append(_take(line, size, nxt, end) * (delta // size))
            width = size
            continue
        if nxt is not None:
            if width is None:
                width = delta
            elif delta != width:
                raise CaptureError(
                    f"line {nxt.lineno}: offset 0x{end:04x} does not follow 0x{line.offset:04x}"
                )
            full.append(line)
        out.append(_take(line, delta, nxt, end))
    return b"".join(out)


# -- link type guessing --------------------------------------------------------


def _ipv4_ok(data: bytes, off: int) -> bool:
    """An IPv4 header (RFC 791) that checks out at ``off``."""
    if len(data) < off + 20:
        return False
    vihl = data[off]
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20 or len(data) < off + ihl:
        return False
    total = _U16.unpack_from(data, off + 2)[0]
    if total == 0:  # segmentation offload on the capturing host
        return True
    if total < ihl:
        return False
    if total <= len(data) - off:
        return True
    # Longer than the dump: only a cut capture, so the header must be intact.
    return internet_checksum(data[off : off + ihl]) == 0


def _ipv6_ok(data: bytes, off: int) -> bool:
    """An IPv6 header (RFC 8200) that checks out at ``off``."""
    return len(data) >= off + 40 and data[off] >> 4 == 6


def _ip_ok(data: bytes, off: int, etype: int) -> bool:
    if etype == 0x0800:
        return _ipv4_ok(data, off)
    if etype == 0x86DD:
        return _ipv6_ok(data, off)
    return False


def guess_linktype(data: bytes) -> int | None:
    """Guess the link layer of a frame from its first bytes.

    Tried in this order: Ethernet (bytes 12-13 are EtherType 0x0800,
    0x86dd, or a 0x8100 VLAN tag around one, and an IP header follows),
    Linux cooked capture v1 (packet type at bytes 0-1 at most 4, protocol
    0x0800 or 0x86dd at bytes 14-15, an IP header at 16), BSD loopback
    (a 4-byte address family of 2, 24, 28 or 30 in either byte order, then
    an IP header of that version), raw IPv4, raw IPv6. An IPv4 header
    "checks out" when its version is 4, its header length at least 20
    bytes and its total length fits the data (or, for a cut capture, its
    header checksum is right).

    Args:
        data: the frame's bytes.

    Returns:
        A LINKTYPE_* value (1 Ethernet, 113 Linux cooked, 0 BSD loopback,
        101 raw IP), or None when no layout fits.

    Follows tcpdump.org "Link-layer header types", IEEE 802.3 / 802.1Q,
    RFC 791 and RFC 8200.
    """
    n = len(data)
    if n >= 14:
        etype = _U16.unpack_from(data, 12)[0]
        if _ip_ok(data, 14, etype):
            return _ETHERNET
        if etype == 0x8100 and n >= 18 and _ip_ok(data, 18, _U16.unpack_from(data, 16)[0]):
            return _ETHERNET
    if (
        n >= 16
        and _U16.unpack_from(data, 0)[0] <= 4
        and _ip_ok(data, 16, _U16.unpack_from(data, 14)[0])
    ):
        return _LINUX_SLL
    if n >= 4:
        for fam in (_U32_LE.unpack_from(data, 0)[0], _U32_BE.unpack_from(data, 0)[0]):
            if fam == 2 and _ipv4_ok(data, 4):
                return _NULL
            if fam in (24, 28, 30) and _ipv6_ok(data, 4):
                return _NULL
    if _ipv4_ok(data, 0) or _ipv6_ok(data, 0):
        return _RAW
    return None


# -- public API ----------------------------------------------------------------


def read_hexdump(text: str, *, linktype: int | None = None) -> list[Frame]:
    """Read the frames of a hex dump.

    Each dump block becomes one frame. Blocks are separated by blank
    lines, by the offset starting again at 0, or by a tcpdump packet line
    or a Wireshark ``Frame (N bytes):`` label. Lines that are not dump
    lines (packet lines, dissection text, comments) are skipped. Each
    line's byte count comes from the offset of the line after it, so the
    ASCII column is never taken for hex; the offsets of a block must go up
    by the same step (16 bytes for every tool's default) from 0.

    Args:
        text: the dump, as Wireshark, tcpdump ``-x``/``-xx``/``-X``/``-XX``,
            ``od -Ax -tx1``, ``hexdump -C`` or ``xxd`` print it.
        linktype: the LINKTYPE_* of every frame; None to guess it for each
            frame with :func:`guess_linktype` (a frame that fits no layout
            gets the link type guessed for most of the other frames).

    Returns:
        The frames, numbered 1.. in text order, ``wirelen == len(data)``.
        ``ts`` comes from the tcpdump packet line before the block when
        there is one (``-tt`` seconds since the epoch; ``-tttt`` dates read
        as UTC; a bare time of day as seconds since midnight), else it is
        the block's index: 0.0, 1.0, 2.0, ...

    Raises:
        CaptureError: "no hex dump found" for text without dump lines;
            "line N: offset 0x0030 does not follow 0x0010" for a line
            missing or broken in a block; "line N: hex dump starts at
            offset 0x0010, not 0"; "cannot tell the link type ..." when
            ``linktype`` is None and no frame fits any layout.
    """
    blocks = [b for b in _split_blocks(text) if not b.skip]
    if not blocks:
        raise CaptureError("no hex dump found")
    datas = [_block_bytes(b) for b in blocks]
    if linktype is None:
        guesses = [guess_linktype(d) for d in datas]
        known = Counter(g for g in guesses if g is not None)
        if not known:
            raise CaptureError(
                "cannot tell the link type of the hex dump: no frame starts with an "
                "Ethernet, Linux cooked, BSD loopback or IP header; give the link type"
            )
        common = known.most_common(1)[0][0]
        types = [g if g is not None else common for g in guesses]
    else:
        types = [linktype] * len(datas)
    return [
        Frame(i + 1, b.ts if b.ts is not None else float(i), lt, d, len(d))
        for i, (b, d, lt) in enumerate(zip(blocks, datas, types, strict=True))
    ]


def looks_like_hexdump(data: bytes) -> bool:
    """Tell a hex dump text file from a capture file by its first bytes.

    Args:
        data: the first bytes of the file (a few kilobytes are plenty;
            8192 are looked at).

    Returns:
        True when the bytes are text (no NUL byte, valid UTF-8 or Latin-1)
        with at least one dump line at offset 0, as :func:`read_hexdump`
        reads them; False for pcap, pcapng, gzip and other binary data.
    """
    head = data[:_SNIFF_LEN]
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end
            return False
        text = head[: exc.start].decode("utf-8")
    lines = text.splitlines()
    if len(data) > _SNIFF_LEN and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    for lineno, raw in enumerate(lines, 1):
        line = _parse_dump_line(lineno, raw.expandtabs())
        if line is not None and line.offset == 0 and line.data:
            return True
    return False
