"""A small mutation engine for byte strings, with PostgreSQL-aware edits.

The generic edits are those of AFL and libFuzzer (bit flips, interesting
integers, inserted, deleted, duplicated and spliced ranges); the
message-aware edits walk a stream by its type bytes and length fields
(PostgreSQL docs, "Message Formats": Byte1 type, Int32 length that counts
itself but not the type byte) and change one message: its length, its
type, its body, or whether it is there at all.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

__all__ = ["INTERESTING_32", "Mutator", "message_bounds"]

#: 32-bit values that tend to break length and count fields.
INTERESTING_32 = (0, 1, 2, 3, 4, 5, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000,
                  0x3FFFFFFF, 0x40000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
_INTERESTING_16 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF)
_INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
#: Type bytes of both directions, and bytes the startup phase and TLS use.
_TYPE_BYTES = b"RSKZTDCIEN123tnsdcGHWAVvpQPBEFHXfc\x16SN"


def message_bounds(data: bytes, start: int = 0) -> list[tuple[int, int]]:
    """Split ``data`` into (start, end) of typed messages by their length fields.

    Stops at the first length that does not fit; a startup-phase packet
    (no type byte) is skipped over by its own length when ``data`` begins
    with one.

    Returns:
        The spans found, in order (possibly none).
    """
    out: list[tuple[int, int]] = []
    pos = start
    n = len(data)
    if n >= 8 and data[0] == 0:
        (length,) = struct.unpack_from("!i", data, 0)
        if 8 <= length <= n:
            out.append((0, length))
            pos = length
    while pos + 5 <= n:
        (length,) = struct.unpack_from("!i", data, pos + 1)
        if length < 4 or pos + 1 + length > n:
            break
        out.append((pos, pos + 1 + length))
        pos += 1 + length
    return out


class Mutator:
    """Applies random edits to byte strings.

    Args:
        rng: the random source (seed it for reproducible runs).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._ops: list[Callable[[bytearray, Sequence[bytes]], None]] = [
            self._flip_bit, self._set_byte, self._set_byte, self._set_int, self._set_int,
            self._add_int, self._insert, self._delete, self._duplicate, self._splice,
            self._truncate, self._msg_length, self._msg_length, self._msg_type,
            self._msg_drop, self._msg_repeat, self._msg_body,
        ]

    def mutate(self, data: bytes, pool: Sequence[bytes] = (), rounds: int | None = None) -> bytes:
        """Return ``data`` with 1 to 8 (or ``rounds``) random edits.

        Args:
            data: the input.
            pool: other inputs to splice ranges from.
            rounds: how many edits; None picks 1..8, fewer more often.
        """
        buf = bytearray(data)
        if rounds is None:
            rounds = 1 << self.rng.randrange(4)
        for _ in range(rounds):
            self.rng.choice(self._ops)(buf, pool)
        return bytes(buf)

    # -- generic edits -----------------------------------------------------

    def _pos(self, buf: bytearray, width: int = 1) -> int | None:
        if len(buf) < width:
            return None
        return self.rng.randrange(len(buf) - width + 1)

    def _flip_bit(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        pos = self._pos(buf)
        if pos is not None:
            buf[pos] ^= 1 << self.rng.randrange(8)

    def _set_byte(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        pos = self._pos(buf)
        if pos is not None:
            r = self.rng.random()
            buf[pos] = (self.rng.choice(_INTERESTING_8) if r < 0.4 else
                        self.rng.choice(_TYPE_BYTES) if r < 0.6 else self.rng.randrange(256))

    def _int_value(self, width: int) -> int:
        if self.rng.random() < 0.7:
            pool = INTERESTING_32 if width == 4 else _INTERESTING_16
            return self.rng.choice(pool) & ((1 << (8 * width)) - 1)
        return self.rng.randrange(1 << (8 * width))

    def _set_int(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        width = self.rng.choice((2, 4, 4))
        pos = self._pos(buf, width)
        if pos is not None:
            value = self._int_value(width)
            big = self.rng.random() < 0.8
            buf[pos : pos + width] = value.to_bytes(width, "big" if big else "little")

    def _add_int(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        pos = self._pos(buf, 4)
        if pos is not None:
            value = int.from_bytes(buf[pos : pos + 4], "big") + self.rng.randint(-35, 35)
            buf[pos : pos + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")

    def _insert(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        pos = self.rng.randrange(len(buf) + 1)
        n = self.rng.choice((1, 1, 2, 4, 8, 32, 300))
        if self.rng.random() < 0.5:
            chunk = bytes(self.rng.choice(_TYPE_BYTES + b"\x00\xff") for _ in range(n))
        else:
            chunk = self.rng.randbytes(n)
        buf[pos:pos] = chunk

    def _delete(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        if buf:
            pos = self.rng.randrange(len(buf))
            n = self.rng.choice((1, 1, 2, 4, 16, 256, len(buf)))
            del buf[pos : pos + n]

    def _duplicate(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        if buf:
            pos = self.rng.randrange(len(buf))
            n = self.rng.choice((1, 4, 16, 200, 2000))
            chunk = bytes(buf[pos : pos + n])
            at = self.rng.randrange(len(buf) + 1)
            buf[at:at] = chunk * self.rng.choice((1, 1, 2, 8))

    def _splice(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        if not pool:
            return self._insert(buf, pool)
        other = self.rng.choice(pool)
        if not other:
            return None
        a = self.rng.randrange(len(other))
        b = min(len(other), a + self.rng.choice((8, 64, 512, 4096)))
        at = self.rng.randrange(len(buf) + 1)
        if self.rng.random() < 0.5:
            buf[at:] = other[a:b]
        else:
            buf[at:at] = other[a:b]
        return None

    def _truncate(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        if buf:
            del buf[self.rng.randrange(len(buf)) :]

    # -- message-aware edits -----------------------------------------------

    def _message(self, buf: bytearray) -> tuple[int, int] | None:
        bounds = message_bounds(bytes(buf))
        if not bounds:
            return None
        return self.rng.choice(bounds)

    def _msg_length(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        m = self._message(buf)
        if m is None:
            return self._set_int(buf, pool)
        start, end = m
        at = start + 1 if buf[start] != 0 or start else start
        r = self.rng.random()
        old = end - start - (1 if at == start + 1 else 0)
        value = (self.rng.choice(INTERESTING_32) if r < 0.4 else
                 old + self.rng.randint(-8, 8) if r < 0.8 else self.rng.randrange(1 << 32))
        buf[at : at + 4] = (value & 0xFFFFFFFF).to_bytes(4, "big")
        return None

    def _msg_type(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        m = self._message(buf)
        if m is not None:
            buf[m[0]] = self.rng.choice(_TYPE_BYTES)

    def _msg_drop(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        m = self._message(buf)
        if m is not None:
            del buf[m[0] : m[1]]

    def _msg_repeat(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        m = self._message(buf)
        if m is not None:
            buf[m[1] : m[1]] = bytes(buf[m[0] : m[1]]) * self.rng.choice((1, 2, 50))

    def _msg_body(self, buf: bytearray, pool: Sequence[bytes]) -> None:
        """Edit inside one message: a count, a length or a string terminator."""
        m = self._message(buf)
        if m is None or m[1] - m[0] <= 5:
            return self._flip_bit(buf, pool)
        start, end = m
        pos = self.rng.randrange(start + 5, end)
        r = self.rng.random()
        if r < 0.4 and pos + 4 <= end:
            buf[pos : pos + 4] = self._int_value(4).to_bytes(4, "big")
        elif r < 0.6 and pos + 2 <= end:
            buf[pos : pos + 2] = self._int_value(2).to_bytes(2, "big")
        elif r < 0.8:
            buf[pos] = 0 if buf[pos] else self.rng.randrange(1, 256)
        else:
            buf[pos] = self.rng.randrange(256)
        return None
