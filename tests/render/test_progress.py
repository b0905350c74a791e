"""The progress bar of big captures: drawn only for terminals, frames unchanged."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from pgwire_inspect.capture import open_capture
from pgwire_inspect.render import progress
from pgwire_inspect.render.progress import with_progress


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def _frames(path: Path) -> list[tuple[int, bytes]]:
    return [(f.no, f.data) for f in open_capture(path)]


def test_bar_on_a_terminal_with_the_same_frames(zeek_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = zeek_dir / "greenhouse-app.pcap"
    monkeypatch.setattr(progress, "MIN_SIZE", 0)
    monkeypatch.setattr(progress, "_EVERY", 1)
    console, out = _console(terminal=True)
    cap = open_capture(path)
    frames = with_progress(cap, console, stdout_is_terminal=True, path=str(path))
    assert frames is not cap
    assert [(f.no, f.data) for f in frames] == _frames(path)
    drawn = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())  # without the colors
    assert "reading greenhouse-app.pcap" in drawn
    kb = f"{path.stat().st_size / 1000:.1f}"
    assert f"0.0/{kb} kB" in drawn and f"{kb}/{kb} kB" in drawn  # from the start to the end


@pytest.mark.parametrize(("stderr_terminal", "stdout_terminal", "min_size"),
                         [(False, True, 0), (True, False, 0), (True, True, 10**12)])
def test_no_bar_when_piped_or_small(zeek_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                    stderr_terminal: bool, stdout_terminal: bool,
                                    min_size: int) -> None:
    path = zeek_dir / "greenhouse-app.pcap"
    monkeypatch.setattr(progress, "MIN_SIZE", min_size)
    console, out = _console(terminal=stderr_terminal)
    cap = open_capture(path)
    assert with_progress(cap, console, stdout_is_terminal=stdout_terminal,
                         path=str(path)) is cap
    assert out.getvalue() == ""


def test_no_bar_for_frames_that_cannot_tell_their_position(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(progress, "MIN_SIZE", 0)
    console, _ = _console(terminal=True)
    frames: list[object] = []
    assert with_progress(frames, console, stdout_is_terminal=True, path="-") is frames


def test_position_advances_to_the_file_size(zeek_dir: Path) -> None:
    path = zeek_dir / "psql-select-now.pcap"
    cap = open_capture(path)
    seen = [cap.position() for _ in cap]
    assert seen == sorted(seen) and 0 < seen[0] <= path.stat().st_size
    assert cap.position() is None  # closed at the end of the iteration
