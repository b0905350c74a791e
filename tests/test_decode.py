"""The pipeline: finding PostgreSQL on any port, numbering connections, counting frames."""

from __future__ import annotations

import struct
from pathlib import Path

from pgwire_inspect.capture import Frame, open_capture
from pgwire_inspect.decode import decode_frames


def moved(frames: list[Frame], old: int, new: int) -> list[Frame]:
    """The frames (Ethernet/IPv4/TCP) with TCP port ``old`` changed to ``new``."""
    out = []
    for f in frames:
        data = bytearray(f.data)
        if len(data) > 38 and data[12:14] == b"\x08\x00" and data[23] == 6:
            tcp = 14 + (data[14] & 0x0F) * 4
            for at in (tcp, tcp + 2):
                if struct.unpack_from("!H", data, at)[0] == old:
                    struct.pack_into("!H", data, at, new)
        out.append(Frame(f.no, f.ts, f.linktype, bytes(data), f.wirelen))
    return out


def test_postgresql_on_another_port_is_found_without_port(zeek_dir: Path) -> None:
    frames = list(open_capture(zeek_dir / "psql-aws-ssl-disable-15432.pcap"))
    found = decode_frames(frames, ports=None)
    assert [c.server[1] for c in found.connections] == [15432]
    assert found.connections[0].verdict == "PostgreSQL"
    assert decode_frames(frames).connections == []  # default: port 5432 only
    forced = decode_frames(frames, ports=(15432,))
    assert len(forced.connections) == 1


def test_other_protocols_on_other_ports_are_ignored(zeek_dir: Path) -> None:
    for name in ("http-on-port-5432.pcap", "mysql-on-port-5432.pcap"):
        frames = list(open_capture(zeek_dir / name))
        on_5432 = decode_frames(frames, ports=None)
        assert [c.verdict for c in on_5432.connections] == ["not PostgreSQL"]
        elsewhere = decode_frames(moved(frames, 5432, 8080), ports=None)
        assert elsewhere.connections == [] and elsewhere.ignored == 1


def test_connections_are_numbered_in_order_of_first_packet(zeek_dir: Path) -> None:
    frames = list(open_capture(zeek_dir / "greenhouse-app.pcap"))
    moved_frames = moved(frames, 5432, 6543)
    for result in (decode_frames(frames, ports=None), decode_frames(moved_frames, ports=None)):
        ids = [c.id for c in result.connections]
        assert ids == [0, 1]
        firsts = [c.first_frame for c in result.connections]
        assert firsts == sorted(firsts)
        assert all(w.conn == c.id for c in result.connections for w in c.messages)


def test_emitted_messages_carry_the_shown_number(zeek_dir: Path) -> None:
    # An ignored connection first (numbered 0 by the reassembly), then PostgreSQL
    # caught mid-stream on another port, which its first messages must prove
    # (the proof comes in the middle of a segment of several messages): shown
    # as connection 0, and every message emitted for it, before and after the
    # proof, says so.
    other = moved(list(open_capture(zeek_dir / "http-on-port-5432.pcap")), 5432, 8080)
    pg = list(open_capture(zeek_dir / "psql-aws-ssl-disable-15432.pcap"))[4:]
    frames = [Frame(i, f.ts, f.linktype, f.data, f.wirelen)
              for i, f in enumerate(other + pg, start=1)]
    emitted: list[tuple[int, int, str]] = []
    found = decode_frames(frames, ports=None, keep_messages=False,
                          emit=lambda wm, conn: emitted.append((wm.conn, conn.id, wm.name)))
    assert [c.id for c in found.connections] == [0] and found.ignored == 1
    assert len(emitted) > 10 and {(w, c) for w, c, _ in emitted} == {(0, 0)}
    assert "ParameterStatus" in {name for _, _, name in emitted}
