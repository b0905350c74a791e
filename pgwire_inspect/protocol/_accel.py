"""Whether the optional C speed-up of the parser is used, and the function it provides.

``_speedups.c`` (built by setup.py when a C compiler is there) splits runs
of DataRow messages; `StreamParser` uses it when it is importable, not
turned off, and not older than its source.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import cast

from ._base import Message

__all__ = ["PURE_PYTHON_ENV", "SPEEDUPS", "data_rows_or_none"]

#: Set (to anything but 0) at import time to run the pure-Python parser only.
PURE_PYTHON_ENV = "PGWIRE_INSPECT_PURE_PYTHON"


def data_rows_or_none() -> Callable[..., tuple[list[Message], int]] | None:
    """The C ``data_rows`` function, or None: not built (no compiler at install
    time), turned off by `PURE_PYTHON_ENV`, or older than its source (an
    editable install whose _speedups.c changed since it was built).

    ``data_rows(buf, pos, limit, offset, direction, cls, max_rows)`` returns
    the complete, well-formed DataRows that follow one another from
    ``buf[pos]`` as ``cls`` objects, and the index just past the last one.
    """
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    source = os.path.join(here, "_speedups.c")
    built = getattr(_speedups, "__file__", None)
    try:
        if built and os.path.getmtime(source) > os.path.getmtime(built):
            warnings.warn("pgwire_inspect.protocol._speedups is older than _speedups.c: "
                          "running without it (pip install -e . rebuilds it)",
                          RuntimeWarning, stacklevel=2)
            return None
    except OSError:
        pass  # no source next to it (an installed wheel): nothing to compare with
    return cast(Callable[..., tuple[list[Message], int]], _speedups.data_rows)


#: True when the C speed-up of DataRow runs is in use.
SPEEDUPS = data_rows_or_none() is not None
