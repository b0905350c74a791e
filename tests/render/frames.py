"""Decoded real captures and the ORM demo's result frame, for the hex dump and explain tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pgwire_inspect.capture import Frame, open_capture
from pgwire_inspect.decode import Decoded, decode_frames
from tests.testpaths import CAPTURES


@cache
def decoded(path: Path) -> Decoded:
    """The capture at ``path`` decoded once, frames kept."""
    return decode_frames(open_capture(path), ports=None, keep_frames=True)


def orm_frame() -> tuple[Decoded, Frame]:
    """The frame with the RowDescription and DataRow of the ORM demo's first query (64 fields)."""
    d = decoded(CAPTURES / "orm-demo-psycopg2.pcap")
    q = next(q for q in d.connections[0].queries
             if (q.sql or "").startswith("SELECT users.id AS users_id"))
    assert q.results[0].description is not None
    no = q.results[0].description.frame
    return d, next(f for f in d.kept_frames if f.no == no)
