"""Input generators of the mutation loop: one per target, from the real seeds.

Each generator takes a seeded `random.Random` and returns one input in
the byte form its target in `fuzz.targets` reads, so that whatever it
finds can be saved and replayed as it is.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Callable
from dataclasses import replace

from pgwire_inspect.capture import Frame

from .mutate import INTERESTING_32, Mutator
from .seeds import Seeds, hexdump_text, load_seeds, pcap_bytes
from .targets import (
    KNOWN_LINKTYPES,
    MIDSTREAM_B,
    MIDSTREAM_F,
    NO_AUTO_DRAIN,
    Op,
    encode_script,
)

__all__ = ["GENERATORS", "Generator", "parser_script"]


def _chunk_size(rng: random.Random, style: int) -> int:
    if style == 0:
        return 1 << 20  # everything at once
    if style == 1:
        return 1  # one byte at a time
    if style == 2:
        return rng.choice((1, 2, 3, 4, 5, 7, 8, 9, 16))
    return rng.choice((1, 5, 64, 536, 1448, 4096, 16384, 65483))


#: A planned gap: (start, end) of the stretch it replaces, the gap's length,
#: and how many gaps of that length in a row.
Gap = tuple[int, int, int, int]


def _gap_plan(rng: random.Random, lo: int, hi: int, count: int) -> list[Gap]:
    """``count`` stretches of the stream bytes [lo, hi) to replace by gaps.

    Returns:
        Sorted, non-overlapping stretches; the gap length is mostly the
        stretch's own, sometimes another (a hole whose size the capture
        got wrong, or a huge one).
    """
    plan: list[Gap] = []
    if hi <= lo:
        return plan
    cuts = sorted(rng.randint(lo, hi) for _ in range(2 * count))
    pos = lo
    for i in range(0, len(cuts), 2):
        a, b = max(cuts[i], pos), max(cuts[i + 1], pos)
        r = rng.random()
        length = (b - a if r < 0.7 else rng.choice(INTERESTING_32[1:]) if r < 0.85
                  else rng.randint(1, 100))
        plan.append((a, b, max(1, min(length, 0xFFFFFFFF)), 1))
        pos = b
    return plan


def _pieces(data: bytes, plan: list[Gap], a: int, b: int, emitted: set[int]
            ) -> list[tuple[bytes | None, int]]:
    """The bytes of [a, b) with the planned gaps cut out (each gap once, where it starts)."""
    out: list[tuple[bytes | None, int]] = []
    pos = a
    for g_start, g_end, length, count in plan:
        if g_start >= b and not (g_start == b == len(data)):
            break
        if g_end <= pos and g_start < a:
            continue
        if g_start > pos:
            out.append((data[pos:g_start], g_start - pos))
        if g_start not in emitted and g_start >= a:
            emitted.add(g_start)
            out += [(None, length)] * count
        pos = max(pos, g_end)
    if pos < b:
        out.append((data[pos:b], b - pos))
    return out


def parser_script(rng: random.Random, mut: Mutator, seeds: Seeds, *, floods: bool = True
                  ) -> bytes:
    """A parser script made from a real connection: mutated, chunked, with gaps.

    Picks one connection as the capture delivered it (chunks of either
    direction in capture order), mutates either direction's bytes, maybe
    cuts a prefix off a direction (a capture that starts mid-connection),
    replaces random stretches by gaps, and replays the chunks in the
    captured order, each cut again in pieces of one style (as they are,
    byte by byte, small, segment-sized). With ``floods``, now and then a
    few thousand SSLRequest packets or gaps in a row (slow inputs, for
    long runs).
    """
    pool = [b for _, b in seeds.streams]
    # Small connections more often: they run faster and mutations reach deeper.
    conv = seeds.conversations[int(len(seeds.conversations) * rng.random() ** 2)]
    flags = NO_AUTO_DRAIN if rng.random() < 0.05 else 0
    data: dict[str, bytes] = {}
    bounds: dict[str, list[int]] = {}
    plans: dict[str, list[Gap]] = {}
    gaps = rng.random() < 0.4
    for d, midstream, p_mut, n_gaps in (("F", MIDSTREAM_F, 0.4, 3), ("B", MIDSTREAM_B, 0.8, 6)):
        parts = [c for dd, c in conv if dd == d]
        cum = [0]
        for c in parts:
            cum.append(cum[-1] + len(c))
        stream = b"".join(parts)
        if d == "F" and floods and rng.random() < 0.02:
            # A flood of SSLRequest / GSSENCRequest packets (no answer awaited).
            flood = struct.pack("!ii", 8, rng.choice((80877103, 80877104)))
            flood *= rng.choice((2, 50, 1500, 3000))
            stream = flood + stream
            cum = [0] + [c + len(flood) for c in cum[1:]]
        if rng.random() < p_mut:
            stream = mut.mutate(stream, pool)
            cum = [min(c, len(stream)) for c in cum]
            cum[-1] = len(stream)
        cut = 0
        if rng.random() < (0.15 if d == "F" else 0.2):
            flags |= midstream
            if stream and rng.random() < 0.7:
                cut = rng.randrange(len(stream) + 1)
        cum = [max(c, cut) for c in cum]
        plan = _gap_plan(rng, cut, len(stream), rng.randint(1, n_gaps)) if gaps and (
            d == "B" or rng.random() < 0.3) else []
        if floods and rng.random() < 0.015:
            # A run of gaps with no bytes between them: a capture that kept only
            # the headers of many segments.
            at = rng.randint(cut, len(stream))
            plan = [g for g in plan if g[1] <= at or g[0] > at]
            plan.append((at, at, rng.choice((1, 536, 1448)), rng.choice((10, 500, 3000))))
            plan.sort()
        data[d], bounds[d], plans[d] = stream, cum, plan
    style = rng.choices((0, 1, 2, 3), (40, 4, 12, 44))[0]
    if style in (1, 2) and len(data["F"]) + len(data["B"]) > 2000:
        style = 3  # byte by byte only on short connections: it is slow
    ops: list[Op] = []
    slot = {"F": 0, "B": 0}
    emitted: dict[str, set[int]] = {"F": set(), "B": set()}
    for d, _ in conv:
        i = slot[d]
        slot[d] += 1
        for piece, length in _pieces(data[d], plans[d], bounds[d][i], bounds[d][i + 1],
                                     emitted[d]):
            if piece is None:
                ops.append(("gap", d, length))
                continue
            n = _chunk_size(rng, style)
            ops += [("data", d, piece[j : j + n]) for j in range(0, len(piece), n)]
        if rng.random() < 0.01:
            ops.append(("drain", d, 0))
    if rng.random() < 0.3:
        ops.append(("finish", rng.choice("FB"), 0))
    return encode_script(flags, ops)


def chunking_input(rng: random.Random, mut: Mutator, seeds: Seeds) -> bytes:
    """A parser script from a real connection (see `parser_script`), for the chunking target.

    The flags byte's high bits choose how the chunking target cuts its data
    operations again.
    """
    script = parser_script(rng, mut, seeds, floods=False)
    return bytes([(script[0] & 0x07) | (rng.randrange(32) << 3)]) + script[1:]


def _mutated_frames(rng: random.Random, mut: Mutator, frames: list[Frame]) -> list[Frame]:
    """Frame-level damage: loss, duplicates, reordering, snaplen cuts, edited bytes."""
    out = list(frames)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        if not out:
            break
        i = rng.randrange(len(out))
        r = rng.random()
        if r < 0.2:
            del out[i]
        elif r < 0.3:
            out.insert(i, out[i])
        elif r < 0.4 and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
        elif r < 0.55:
            keep = rng.choice((0, 14, 34, 54, 66, 68, 80)) if rng.random() < 0.6 else \
                rng.randrange(len(out[i].data) + 1)
            out[i] = replace(out[i], data=out[i].data[:keep])
        elif r < 0.65:
            # Every later frame loses its payload: a headers-only capture.
            keep = rng.choice((54, 66, 68))
            out[i:] = [replace(f, data=f.data[:keep]) for f in out[i:]]
        else:
            out[i] = replace(out[i], data=mut.mutate(out[i].data, rounds=rng.choice((1, 2))))
    return out


def capture_file(rng: random.Random, mut: Mutator, seeds: Seeds) -> bytes:
    """A mutated capture file: byte edits, truncations, huge lengths or frame edits."""
    raw = rng.choice(seeds.files)
    r = rng.random()
    if r < 0.3:
        body = mut.mutate(raw, seeds.files)
    elif r < 0.45:
        body = raw[: rng.randrange(len(raw) + 1)]
    elif r < 0.7:
        # A huge or odd length where a record or block length is.
        buf = bytearray(raw)
        for _ in range(rng.choice((1, 1, 2))):
            pos = rng.randrange(0, max(1, len(buf) - 4)) & ~3
            if rng.random() < 0.5:
                pos = min(len(buf) - 4, rng.choice((4, 8, 12, 16, 20, 24, 28, 32, 36)))
            value = rng.choice((*INTERESTING_32, 262140, 262141, 262144, 0x1000000))
            buf[pos : pos + 4] = struct.pack(rng.choice("<>") + "I", value)
        body = bytes(buf)
    else:
        seed_frames = rng.choice(_frame_groups())
        frames = _mutated_frames(rng, mut, seed_frames)
        body = pcap_bytes(frames, linktype=seed_frames[0].linktype if seed_frames else 1,
                          nano=rng.random() < 0.5)
    return bytes([rng.randrange(4)]) + body


def pipeline_file(rng: random.Random, mut: Mutator, seeds: Seeds) -> bytes:
    """A capture with frame-level damage (mostly), for the whole pipeline."""
    if rng.random() < 0.25:
        return bytes([rng.randrange(4)]) + capture_file(rng, mut, seeds)[1:]
    seed_frames = rng.choice(_frame_groups())
    frames = _mutated_frames(rng, mut, seed_frames)
    linktype = seed_frames[0].linktype if seed_frames else 1
    return bytes([rng.randrange(4)]) + pcap_bytes(frames, linktype=linktype)


def frame_input(rng: random.Random, mut: Mutator, seeds: Seeds) -> bytes:
    """A mutated frame, mostly under its own link type."""
    f = rng.choice(seeds.frames)
    data = mut.mutate(f.data) if rng.random() < 0.9 else f.data
    if rng.random() < 0.9:
        sel = KNOWN_LINKTYPES.index(f.linktype) if f.linktype in KNOWN_LINKTYPES else 0
        if rng.random() < 0.2:
            sel = rng.randrange(len(KNOWN_LINKTYPES))
    else:
        sel = rng.randrange(0x10000)
    return sel.to_bytes(2, "big") + bytes([rng.choice((0, 0, 1, 100, 255))]) + data


def hexdump_input(rng: random.Random, mut: Mutator, seeds: Seeds) -> bytes:
    """Mutated hex dump text: line edits, character edits, or byte edits."""
    if rng.random() < 0.3:
        f = rng.choice(seeds.frames)
        text = hexdump_text([replace(f, data=mut.mutate(f.data, rounds=1))],
                            rng.choice(("wireshark", "tcpdump", "od")))
    else:
        text = rng.choice(seeds.hexdumps)
    lines = text.splitlines(keepends=True)
    for _ in range(rng.choice((1, 2, 4))):
        if not lines:
            break
        i = rng.randrange(len(lines))
        r = rng.random()
        if r < 0.15:
            del lines[i]
        elif r < 0.3:
            lines.insert(i, lines[i])
        elif r < 0.4:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif r < 0.5:
            lines.insert(i, rng.choice(("\n", "*\n", "0000\n", "Frame (74 bytes):\n",
                                        "\t0x0000:  4500\n", "ffffffffffffffff  00\n")))
        else:
            raw = mut.mutate(lines[i].encode(), rounds=1)
            lines[i] = raw.decode("latin-1")
    body = "".join(lines).encode("utf-8", "replace")
    if rng.random() < 0.1:
        body = mut.mutate(body)
    return bytes([rng.randrange(2)]) + body


@functools.lru_cache(maxsize=1)
def _frame_groups() -> list[list[Frame]]:
    """The seed frames split back into their captures (numbering restarts at 1)."""
    groups: list[list[Frame]] = []
    for f in load_seeds().frames:
        if f.no == 1 or not groups:
            groups.append([])
        groups[-1].append(f)
    return groups

#: A generator: (rng, mutator, seeds) -> one input for its target.
Generator = Callable[[random.Random, Mutator, Seeds], bytes]

#: Target name -> its generator.
GENERATORS: dict[str, Generator] = {
    "parser": parser_script,
    "chunking": chunking_input,
    "capture": capture_file,
    "frame": frame_input,
    "pipeline": pipeline_file,
    "hexdump": hexdump_input,
}
