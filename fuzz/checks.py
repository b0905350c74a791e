"""What every fuzz target shares: the error of a broken promise, and a time limit."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["Hang", "InvariantError", "check", "deadline"]


class InvariantError(AssertionError):
    """A decoder broke a promise it documents (the message says which)."""


class Hang(Exception):
    """One input ran longer than its time limit."""


def check(ok: bool, what: str) -> None:
    """Raise `InvariantError` with ``what`` unless ``ok``."""
    if not ok:
        raise InvariantError(what)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `Hang` in the main thread if the block runs longer than ``seconds``.

    Uses SIGALRM (POSIX); does nothing outside the main thread or when
    ``seconds`` is 0.
    """
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s")

    try:
        old = signal.signal(signal.SIGALRM, expired)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
