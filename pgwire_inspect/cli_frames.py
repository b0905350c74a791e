"""Frame views for the CLI: choosing frames, masked annotated hex dumps, explanations, export.

Used by `read --hexdump`, `demo --hexdump`/`--explain`, `query ...` and the
`explain` command. A capture of thousands of frames is never dumped whole
by default: at most `DEFAULT_MAX_FRAMES` frames, and the view says how many
were left out and how to choose others.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from .annotate import Annotation, FrameAnnotator
from .capture import Frame
from .decode import Decoded
from .errors import CaptureError
from .redact import MASK, Redaction
from .redact_pcap import secret_ranges
from .render.explain import explain_frame
from .render.hexdump import export, render_hexdump

if TYPE_CHECKING:
    from .catalog import Catalog

__all__ = ["DEFAULT_MAX_FRAMES", "FrameChoice", "mask_frame", "select_frames", "show_frames"]

#: Frames dumped when the user did not choose any.
DEFAULT_MAX_FRAMES = 12


@dataclass(frozen=True)
class FrameChoice:
    """Which frames to show.

    Attributes:
        frames: frame numbers (1-based) chosen explicitly.
        conn: only frames of this connection.
        query: only frames of this query (1-based, per connection, as the read view numbers).
        types: only frames holding one of these message names.
        max_frames: at most this many (the rest are counted).
    """

    frames: tuple[int, ...] = ()
    conn: int | None = None
    query: int | None = None
    types: tuple[str, ...] = ()
    max_frames: int = DEFAULT_MAX_FRAMES


def select_frames(decoded: Decoded, choice: FrameChoice,
                  only: Iterable[int] | None = None) -> tuple[list[Frame], int]:
    """The frames to show, and how many others matched but were left out.

    Without explicit frame numbers, frames that carry no PostgreSQL bytes and
    frames that repeat bytes already shown (loopback captures hold every
    packet twice; retransmissions) are skipped.

    Args:
        decoded: the capture, decoded with ``keep_frames=True``.
        choice: the selection.
        only: if given, frame numbers to choose among (e.g. the ORM's queries).

    Raises:
        CaptureError: an explicitly chosen frame does not exist.
    """
    by_no = {f.no: f for f in decoded.kept_frames}
    if choice.frames:
        missing = [n for n in choice.frames if n not in by_no]
        if missing:
            raise CaptureError(f"no frame {missing[0]} (the capture has frames 1 to "
                               f"{len(decoded.kept_frames)})")
        return [by_no[n] for n in choice.frames], 0
    wanted: set[int] | None = set(only) if only is not None else None
    conns = [c for c in decoded.connections if choice.conn is None or c.id == choice.conn]
    if choice.query is not None or choice.types:
        picked: set[int] = set()
        for c in conns:
            if choice.query is not None:
                queries = [q for q in c.queries if q.index + 1 == choice.query]
                messages = [w for q in queries for w in q.messages]
            else:
                messages = c.messages
            for w in messages:
                if not choice.types or w.name in choice.types:
                    picked.update(range(w.frame, w.last_frame + 1))
        wanted = picked if wanted is None else wanted & picked
    keys = {c.key for c in conns}
    seen: set[tuple[int, str, int, int]] = set()
    matched: list[Frame] = []
    for frame in decoded.kept_frames:
        loc = decoded.locations.get(frame.no)
        if loc is None or loc.length == 0 or loc.conn_key not in keys:
            continue
        if wanted is not None and frame.no not in wanted:
            continue
        key = (loc.conn_key, loc.direction, loc.stream_offset, loc.length)
        if key in seen:
            continue  # the same bytes again: a loopback duplicate or a retransmission
        seen.add(key)
        matched.append(frame)
    return matched[: choice.max_frames], max(0, len(matched) - choice.max_frames)


def mask_frame(decoded: Decoded, frame: Frame, annotations: Sequence[Annotation],
               redaction: Redaction) -> tuple[Frame, list[Annotation]]:
    """The frame and its annotations with masked bytes shown as '*' and values as ***.

    Passwords and SASL data (unless ``show_secrets``) and ``--redact-columns``
    values never reach the screen, the hex dump included.
    """
    loc = decoded.locations.get(frame.no)
    conn = next((c for c in decoded.connections if loc and c.key == loc.conn_key), None)
    if loc is None or conn is None:
        return frame, list(annotations)
    spans = secret_ranges(conn, redaction).get(loc.direction, [])
    lo, hi = loc.stream_offset, loc.stream_offset + loc.length
    hidden: list[tuple[int, int]] = []
    for start, end in spans:
        a, b = max(start, lo), min(end, hi)
        if a < b:
            at = loc.payload_offset + (a - lo)
            hidden.append((at, at + (b - a)))
    if not hidden:
        return frame, list(annotations)
    data = bytearray(frame.data)
    for a, b in hidden:
        data[a:b] = b"*" * (b - a)
    masked = [replace(ann, value=MASK, meaning="masked: a secret (--show-secrets shows it) or "
                                               "a --redact-columns column")
              if any(ann.start < b and a < ann.end for a, b in hidden) else ann
              for ann in annotations]
    return Frame(frame.no, frame.ts, frame.linktype, bytes(data), frame.wirelen), masked


def show_frames(console: Console, decoded: Decoded, frames: Sequence[Frame], left_out: int, *,
                redaction: Redaction, catalog: Catalog | None = None, explain: bool = False,
                extra: Callable[[Console], None] | None = None,
                before: Callable[[Console], None] | None = None, export_svg: str | None = None,
                export_html: str | None = None) -> None:
    """Print the annotated hex dump (and with ``explain`` the walk) of each frame.

    Args:
        console: where to print.
        decoded: the capture, decoded with ``keep_frames=True``.
        frames: the frames to show.
        left_out: how many matching frames were not shown (said at the end).
        redaction: what to mask.
        catalog: names for OIDs.
        explain: also print the step-by-step explanation of each frame.
        extra: more to print after the frames (e.g. the DataRow → instance walk).
        before: what was printed before the frames (the tables), painted again into
            the export so that it holds them too.
        export_svg, export_html: also write what was printed to these files, in color.
    """
    annotator = FrameAnnotator(decoded, catalog)
    views = []
    for frame in frames:
        shown, anns = mask_frame(decoded, frame, annotator.annotate(frame), redaction)
        views.append((frame, shown, anns))

    def paint(out: Console) -> None:
        for frame, shown, anns in views:
            title = f"Frame {frame.no}: {len(frame.data)} bytes"
            render_hexdump(out, shown, anns, title=title)
            if explain:
                explain_frame(out, shown, anns)
            out.print()
        if left_out:
            out.print(Text(f"{left_out} more frame(s) matched and are not shown: choose with "
                           "--frame N, --conn N, --query N or --type NAME,NAME (or "
                           "--max-frames N)", style="dim"))
        if extra is not None:
            extra(out)

    paint(console)
    if export_svg or export_html:
        recorder = Console(record=True, file=io.StringIO(), force_terminal=True,
                           color_system="truecolor", width=max(console.width, 100))
        if before is not None:
            before(recorder)
        paint(recorder)
        export(recorder, export_svg, export_html, title="pgwire-inspect")
