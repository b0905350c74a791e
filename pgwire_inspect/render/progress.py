"""A progress bar while a big capture file is read (rich), on the error console.

Shown only when both standard output and standard error are terminals, for
files of at least `MIN_SIZE` bytes; piped output never gets one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["MIN_SIZE", "with_progress"]

#: Files smaller than this (bytes) are read without a bar: they take well under a second.
MIN_SIZE = 8 * 1024 * 1024
#: Frames between two updates of the bar (an update costs a few microseconds).
_EVERY = 512


def with_progress(frames: Iterable[Any], console: Console, *, stdout_is_terminal: bool,
                  path: str | None) -> Iterable[Any]:
    """``frames``, with a progress bar on ``console`` while they are read.

    Args:
        frames: a capture's frames; a `~pgwire_inspect.capture.files.CaptureFile`
            (which can tell how far into the file it is) gets a bar, anything
            else (hex dumps, standard input) is returned as it is.
        console: the error console the bar is drawn on (transient: it is
            erased when reading ends).
        stdout_is_terminal: whether the command's output goes to a terminal.
        path: the capture file's path, for its size.

    Returns:
        An iterable of the same frames, in the same order.
    """
    position = getattr(frames, "position", None)
    if position is None or path is None or path == "-" or not stdout_is_terminal:
        return frames
    if not console.is_terminal:
        return frames
    try:
        size = os.path.getsize(path)
    except OSError:
        return frames
    if size < MIN_SIZE:
        return frames
    return _frames_with_bar(frames, position, size, console, os.path.basename(path))


def _frames_with_bar(frames: Iterable[Any], position: Any, size: int, console: Console,
                     name: str) -> Iterator[Any]:
    progress = Progress(TextColumn("reading {task.description}"), BarColumn(),
                        DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                        console=console, transient=True)
    with progress:
        task = progress.add_task(name, total=size)
        for n, frame in enumerate(frames, 1):
            if n % _EVERY == 0:
                done = position()
                if done is not None:
                    progress.update(task, completed=done)
            yield frame
