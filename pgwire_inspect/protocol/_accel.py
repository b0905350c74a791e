"""Whether the optional C speed-ups are used, and the functions they provide.

setup.py builds ``protocol/_speedups.c`` (runs of DataRow messages) and
``render/_speedups.c`` (JSON lines of DataRows) when a C compiler is there.
Each is used when it is importable, not turned off by `PURE_PYTHON_ENV`, and
not older than its source; otherwise the pure-Python code does the same work.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from typing import Any, cast

from ._base import Message

__all__ = ["PURE_PYTHON_ENV", "SPEEDUPS", "data_rows_or_none", "speedup"]

#: Set (to anything but 0) at import time to run pure Python only.
PURE_PYTHON_ENV = "PGWIRE_INSPECT_PURE_PYTHON"


def speedup(module: str, name: str) -> Callable[..., Any] | None:
    """The function ``name`` of the C extension ``module`` (a dotted name), or None:
    not built (no compiler at install time), turned off by `PURE_PYTHON_ENV`, or
    older than the ``.c`` file beside it (an editable install whose source
    changed since it was built: a `RuntimeWarning` says so)."""
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        ext = importlib.import_module(module)
    except ImportError:
        return None
    built = getattr(ext, "__file__", None) or ""
    source = os.path.join(os.path.dirname(built), module.rpartition(".")[2] + ".c")
    try:
        if built and os.path.getmtime(source) > os.path.getmtime(built):
            warnings.warn(f"{module} is older than {os.path.basename(source)}: running "
                          "without it (pip install -e . rebuilds it)",
                          RuntimeWarning, stacklevel=2)
            return None
    except OSError:
        pass  # no source next to it (an installed wheel): nothing to compare with
    return cast(Callable[..., Any], getattr(ext, name))


def data_rows_or_none() -> Callable[..., tuple[list[Message], int]] | None:
    """protocol/_speedups.c's ``data_rows``, or None (see `speedup`).

    ``data_rows(buf, pos, limit, offset, direction, cls, max_rows)`` returns
    the complete, well-formed DataRows that follow one another from
    ``buf[pos]`` as ``cls`` objects, and the index just past the last one.
    """
    return speedup(__name__.rpartition(".")[0] + "._speedups", "data_rows")


#: True when the C speed-up of DataRow runs is in use.
SPEEDUPS = data_rows_or_none() is not None
