"""Live runs: sniffing, the relay, and the fallback from one to the other."""

from __future__ import annotations

from typing import Any

import pytest

from pgwire_inspect.capture import LiveCapture
from pgwire_inspect.errors import CaptureError
from pgwire_inspect.linking import link_run
from pgwire_inspect.live import _is_local, run_live
from pgwire_inspect.orm import demo_program, ensure_demo_data, prepare_url


def check_demo(result: Any) -> None:
    assert result.run is not None and result.connection is not None
    assert result.connection.gaps == []
    linked = link_run(result.run, result.connection)
    built = {li.instance.identity: li for li in linked.instances}
    assert set(built) == {(1,), (2,)}
    assert all(li.row is not None and li.row.built for li in built.values())
    assert built[(1,)].instance.attributes["username"] == "Demo"


@pytest.mark.parametrize("method", ["sniff", "relay"])
def test_demo_captured_both_ways(pg_dsn: str, method: str) -> None:
    url = prepare_url(pg_dsn)
    ensure_demo_data(url)
    result = run_live(url, demo_program(), capture=method)
    check_demo(result)
    assert result.closed
    names = [w.name for w in result.connection.messages]  # type: ignore[union-attr]
    assert names[0] == "StartupMessage" and names[-1] == "Terminate"


def test_no_permission_to_sniff_falls_back_to_the_relay(pg_dsn: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: LiveCapture) -> LiveCapture:
        raise CaptureError("live capture needs root or CAP_NET_RAW: Operation not permitted")

    monkeypatch.setattr(LiveCapture, "start", refuse)
    url = prepare_url(pg_dsn)
    ensure_demo_data(url)
    result = run_live(url, demo_program())
    check_demo(result)
    assert any("relay" in n and "CAP_NET_RAW" in n for n in result.notices)
    with pytest.raises(CaptureError, match="CAP_NET_RAW"):
        run_live(url, demo_program(), capture="sniff")


def test_is_local() -> None:
    assert _is_local("127.0.0.1") and _is_local("::1")
    assert not _is_local("203.0.113.9")  # TEST-NET-3: never this machine


def test_only_the_orm_connection_is_kept_for_write_pcap(pg_dsn: str) -> None:
    import threading

    import psycopg

    from pgwire_inspect.capture import decode_frame

    url = prepare_url(pg_dsn)
    ensure_demo_data(url)
    stop = threading.Event()
    started = threading.Event()

    def other_program() -> None:  # another client of the same server, at the same time
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("select 'other-traffic'").fetchall()
                started.set()

    other = threading.Thread(target=other_program, daemon=True)
    other.start()
    assert started.wait(10)
    try:
        result = run_live(url, demo_program(), capture="sniff")
    finally:
        stop.set()
        other.join(10)
    check_demo(result)
    port = result.run.client_port  # type: ignore[union-attr]
    segs = [decode_frame(f) for f in result.frames]
    assert segs and all(s is not None and port in (s.sport, s.dport) for s in segs)
    assert not any(b"other-traffic" in f.data for f in result.frames)
