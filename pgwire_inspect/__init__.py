"""pgwire-inspect: see what an ORM and PostgreSQL say to each other on the wire.

The Python API (see `pgwire_inspect.api`)::

    from pgwire_inspect import capture, read_capture

    with capture(engine) as cap:      # sniff the block's traffic to the engine's server
        ...
    cap.statements[0].sql, cap.statements[0].rows

    read_capture("session.pcapng").queries

The names are imported on first use, so ``import pgwire_inspect`` stays light.

``pgwire_inspect.capture`` is the API function, also after the subpackage of
the same name has been imported: import from the subpackage with ``from
pgwire_inspect.capture import LiveCapture`` (``sys.modules`` holds it).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Capture",
    "CapturedQuery",
    "CapturedResult",
    "__version__",
    "capture",
    "read_capture",
]

if TYPE_CHECKING:
    from .api import Capture, CapturedQuery, CapturedResult, capture, read_capture

_API = frozenset({"Capture", "CapturedQuery", "CapturedResult", "capture", "read_capture"})


def __getattr__(name: str) -> Any:
    """Import the API names on first use (PEP 562)."""
    if name in _API:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """This package's module type: importing the ``capture`` subpackage does not
    replace the ``capture`` function as the package's attribute (the import
    system sets a subpackage as its parent's attribute; Python docs, "The
    import system", "Submodules")."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "capture" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
