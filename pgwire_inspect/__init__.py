"""pgwire-inspect: see what an ORM and PostgreSQL say to each other on the wire."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
