"""Profile one pgwire-inspect command and list where its time goes.

Two samplers, neither a dependency of the project:

- py-spy (``pip install py-spy``) samples the process from outside, at 100
  samples per second, without slowing it down; its raw output names the
  line each frame was on, so the hottest lines are listed too.
- pyinstrument (``pip install pyinstrument``) samples from inside (1 ms),
  and records calls of C functions (``len``, ``Struct.unpack_from`` ...) as
  frames of their own; it slows the program down several times, more so
  code that makes many small calls, so its shares lean towards that code.

Own time of a function: samples whose innermost frame is the function
(with py-spy, time in the C functions it calls included). Cumulative
time: samples with the function anywhere on the stack, counted once.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FunctionTime", "Profile", "aggregate_pyinstrument", "parse_pyspy_raw", "profile"]

#: Samples per second asked of py-spy.
PYSPY_RATE = 100
#: Frames that only run the program (interpreter start, module import, Click,
#: the command wrappers): left out of the cumulative list, where they would
#: all show 100%.
_WRAPPERS = ("<frozen ", "<string>", "<module>", "pyinstrument/", "click/",
             "pgwire_inspect/__main__.py", "pgwire_inspect/cli")


@dataclass
class FunctionTime:
    """Seconds spent in one function over a profile (``where`` names it)."""

    where: str
    own: float = 0.0
    cumulative: float = 0.0


@dataclass
class Profile:
    """Where the time of one run went.

    Attributes:
        sampler: "py-spy" or "pyinstrument".
        total: seconds sampled.
        functions: by "file function".
        lines: own seconds by "file:line function" (py-spy only).
    """

    sampler: str
    total: float
    functions: dict[str, FunctionTime] = field(default_factory=dict)
    lines: dict[str, float] = field(default_factory=dict)

    def top(self, key: str, n: int) -> list[FunctionTime]:
        """The ``n`` functions with the most ``key`` ("own" or "cumulative") time.

        The cumulative list leaves out the frames that only start the program.
        """
        funcs = [f for f in self.functions.values()
                 if key == "own" or not f.where.startswith(_WRAPPERS)]
        return sorted(funcs, key=lambda f: getattr(f, key), reverse=True)[:n]

    def report(self, n: int) -> list[str]:
        """The top ``n`` lists as text lines."""
        total = self.total or 1.0

        def row(seconds: float, where: str) -> str:
            return f"    {seconds:7.2f} s {100 * seconds / total:5.1f}%  {where}"

        out = [f"  {self.sampler}, {self.total:.1f} s sampled", "   by own time:"]
        out += [row(f.own, f.where) for f in self.top("own", n)]
        out.append("   by cumulative time:")
        out += [row(f.cumulative, f.where) for f in self.top("cumulative", n)]
        if self.lines:
            out.append("   hottest lines (own time):")
            hot = sorted(self.lines.items(), key=lambda kv: kv[1], reverse=True)[:n]
            out += [row(sec, where) for where, sec in hot]
        return out


# ------------------------------------------------------------------ py-spy


def _split_frame(frame: str) -> tuple[str, str]:
    """py-spy's "function (file:line)" as ("file function", "file:line function")."""
    func, _, rest = frame.rpartition(" (")
    if not func:
        return frame, frame
    where = rest.rstrip(")")
    path, _, line = where.rpartition(":")
    if not path:
        path, line = where, ""
    return f"{path} {func}", f"{path}:{line} {func}"


def parse_pyspy_raw(text: str, rate: float = PYSPY_RATE) -> Profile:
    """Aggregate py-spy's ``--format raw`` output (collapsed stacks with counts).

    Args:
        text: lines of ``frame;frame;...;innermost count``.
        rate: the sampling rate in samples per second.

    Returns:
        The `Profile` (seconds = samples / rate).
    """
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_split_frame(f) for f in stack.split(";")]
        for func in {f for f, _ in frames}:
            cumulative[func] += count
        own[frames[-1][0]] += count
        lines[frames[-1][1]] += count
    prof = Profile("py-spy", samples / rate)
    for func, n in cumulative.items():
        prof.functions[func] = FunctionTime(func, own[func] / rate, n / rate)
    prof.lines = {k: v / rate for k, v in lines.items()}
    return prof


def _pyspy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def profile_pyspy(args: Sequence[str], out_dir: Path) -> Profile:
    """Run ``python -m pgwire_inspect ARGS`` under py-spy.

    Raises:
        RuntimeError: py-spy or the command failed.
    """
    exe = _pyspy()
    if exe is None:
        raise RuntimeError("py-spy is not installed")
    out = out_dir / "profile.txt"
    argv = [exe, "record", "-r", str(PYSPY_RATE), "-f", "raw", "-o", str(out), "--",
            sys.executable, "-m", "pgwire_inspect", *args]
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed: {proc.stderr.strip()[-1000:]}")
    return parse_pyspy_raw(out.read_text())


# ------------------------------------------------------------ pyinstrument


def aggregate_pyinstrument(root: Any) -> Profile:
    """Own and cumulative time per function from a pyinstrument frame tree.

    Args:
        root: ``Session.root_frame()`` of a pyinstrument session.
    """
    prof = Profile("pyinstrument", float(root.time))

    def name(frame: Any) -> str:
        path = str(frame.file_path or "")
        if "/pgwire_inspect/" in path:
            path = "pgwire_inspect/" + path.rsplit("/pgwire_inspect/", 1)[1]
        elif "site-packages/" in path:
            path = path.rsplit("site-packages/", 1)[1]
        elif "/lib/python3" in path:
            path = path.rsplit("/lib/", 1)[1].split("/", 1)[-1]
        return f"{path} {frame.function}"

    stack: list[tuple[Any, frozenset[str]]] = [(root, frozenset())]
    while stack:
        frame, above = stack.pop()
        key = name(frame)
        ft = prof.functions.get(key)
        if ft is None:
            ft = prof.functions[key] = FunctionTime(key)
        if key not in above:
            ft.cumulative += frame.time
        here = above | {key}
        for child in frame.children:
            if child.is_synthetic:
                ft.own += child.time
            else:
                stack.append((child, here))
    return prof


def profile_pyinstrument(args: Sequence[str], out_dir: Path) -> Profile:
    """Run ``python -m pgwire_inspect ARGS`` under pyinstrument.

    Raises:
        RuntimeError: pyinstrument is not installed, or the command failed.
    """
    try:
        from pyinstrument.session import Session
    except ImportError:
        raise RuntimeError("pyinstrument is not installed") from None
    session_file = out_dir / "profile.pyisession"
    argv = [sys.executable, "-m", "pyinstrument", "-i", "0.001", "-r", "pyisession",
            "-o", str(session_file), "-m", "pgwire_inspect", *args]
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"pyinstrument failed: {proc.stderr.strip()[-1000:]}")
    return aggregate_pyinstrument(Session.load(str(session_file)).root_frame())


def profile(sampler: str, args: Sequence[str], out_dir: Path | None = None) -> Profile | None:
    """Profile ``pgwire-inspect ARGS`` once.

    Args:
        sampler: "py-spy", "pyinstrument", or "auto" (py-spy when installed,
            else pyinstrument, else none).
        args: the command's arguments (``["read", "big.pcap", "--stats"]``).
        out_dir: where the sampler's output goes (a temporary folder if None).

    Returns:
        The `Profile`, or None with "auto" when no sampler is installed.

    Raises:
        RuntimeError: the sampler asked for is missing, or the run failed.
    """
    if sampler == "auto":
        if _pyspy() is not None:
            sampler = "py-spy"
        else:
            try:
                import pyinstrument  # noqa: F401
            except ImportError:
                return None
            sampler = "pyinstrument"
    run = profile_pyspy if sampler == "py-spy" else profile_pyinstrument
    if out_dir is not None:
        return run(args, out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        return run(args, Path(tmp))
