"""The classroom views through the CLI: --hexdump, explain, frame choice, export, masking."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner
from testpaths import CAPTURES

from pgwire_inspect.cli import cli


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--no-color", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def test_hexdump_of_chosen_message_types_with_marker_lines() -> None:
    out = run("read", str(CAPTURES / "orm-demo-psycopg2.pcap"), "--hexdump",
              "--type", "RowDescription", "--max-frames", "2")
    assert out.count("Frame ") >= 2
    assert "0000  00 00 00 00 00 00" in out  # the dump starts at the link header
    assert "~" in out and "|" in out  # marker lines key the bytes without color
    assert "columns[0].type_oid" in out and "more frame(s) matched" in out


def test_explain_walks_every_byte_and_masks_the_password() -> None:
    out = run("explain", str(CAPTURES / "auth-md5.pcap"), "--type", "PasswordMessage")
    assert "Type byte 'p': PasswordMessage" in out
    assert "password = ***" in out
    shown = run("explain", str(CAPTURES / "auth-md5.pcap"), "--type", "PasswordMessage",
                "--show-secrets")
    assert "password = 'md5" in shown


def test_explain_exports_svg_and_html(tmp_path: Path) -> None:
    svg, html = tmp_path / "frame.svg", tmp_path / "frame.html"
    run("explain", str(CAPTURES / "psycopg2-simple.pcap"), "--type", "DataRow",
        "--export-svg", str(svg), "--export-html", str(html))
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = "".join(root.itertext())
    assert "DataRow" in text and "0000" in text
    assert "RowDescription" in html.read_text() or "DataRow" in html.read_text()


def test_unknown_frame_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["read", str(CAPTURES / "auth-md5.pcap"), "--hexdump",
                                      "--frame", "9999"])
    assert result.exit_code == 2 and "no frame 9999" in result.output


def test_hex_dump_text_input_explains_a_handout(tmp_path: Path) -> None:
    from pgwire_inspect.capture import open_capture

    frame = next(f for f in open_capture(CAPTURES / "orm-demo-psycopg2.pcap")
                 if b"users_id\x00" in f.data)
    lines = [f"{i:04x}   " + " ".join(f"{b:02x}" for b in frame.data[i:i + 16])
             for i in range(0, len(frame.data), 16)]
    handout = tmp_path / "handout.txt"
    handout.write_text("\n".join(lines) + "\n")
    out = run("explain", str(handout), "--frame", "1")
    assert "RowDescription" in out and "users_id" in out


def _as_bsd_loopback(path: Path, tmp_path: Path) -> Path:
    """The capture rewritten as a macOS lo0 capture: a 4-byte host-order family header."""
    from pgwire_inspect.capture import Frame, open_capture, write_pcap

    frames = []
    for f in open_capture(path):
        family = 2 if f.data[12:14] == b"\x08\x00" else 30  # AF_INET, macOS AF_INET6
        data = family.to_bytes(4, "little") + f.data[14:]
        frames.append(Frame(f.no, f.ts, 0, data, len(data)))
    out = tmp_path / f"bsd-{path.name}"
    write_pcap(out, frames)
    return out


def test_bsd_loopback_frames_ipv4_and_ipv6_are_explained_byte_for_byte(tmp_path: Path) -> None:
    for name in ("orm-demo-psycopg2.pcap", "ipv6.pcap"):
        bsd = _as_bsd_loopback(CAPTURES / name, tmp_path)
        for kind in ("RowDescription", "DataRow", "ReadyForQuery"):
            out = run("explain", str(bsd), "--type", kind)
            assert "BSD loopback" in out or "NULL" in out or "loopback" in out.lower(), out[:400]
            assert f"Type byte '{ {'RowDescription': 'T', 'DataRow': 'D'}.get(kind, 'Z')}'" in out
        if name == "ipv6.pcap":
            assert "::1" in run("explain", str(bsd), "--type", "DataRow")
