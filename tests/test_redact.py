"""Secrets are masked by default in every output; --redact-columns masks chosen columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from testpaths import CAPTURES

from pgwire_inspect.cli import cli
from pgwire_inspect.redact import MASK, Redaction


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, ["--no-color", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def objects(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_md5_password_is_masked_unless_asked(zeek_dir: Path) -> None:
    path = str(zeek_dir / "greenhouse-app.pcap")
    masked = [o for o in objects(run("read", path, "--format", "jsonl"))
              if o["type"] == "PasswordMessage"]
    assert masked and all(o["fields"]["password"] == MASK for o in masked)
    table = run("read", path)
    assert "md57e45bd227c38f260985f33fc27745946" not in table and "password=***" in table
    shown = [o for o in objects(run("read", path, "--format", "jsonl", "--show-secrets"))
             if o["type"] == "PasswordMessage"]
    assert shown[0]["fields"]["password"] == "md57e45bd227c38f260985f33fc27745946"


def test_sasl_messages_are_masked(zeek_dir: Path) -> None:
    objs = objects(run("read", str(zeek_dir / "psql-login.pcap"), "--format", "jsonl"))
    sasl = [o for o in objs if o["type"] in ("SASLInitialResponse", "SASLResponse")]
    assert len(sasl) == 2 and all(o["fields"]["data"] == MASK for o in sasl)
    assert sasl[0]["fields"]["mechanism"] == "SCRAM-SHA-256"
    out = run("read", str(zeek_dir / "psql-login.pcap"))
    proof = bytes.fromhex(next(o for o in objects(run(
        "read", str(zeek_dir / "psql-login.pcap"), "--format", "jsonl", "--show-secrets"))
        if o["type"] == "SASLResponse")["fields"]["data"])
    assert proof.startswith(b"c=biws,r=") and proof.hex()[:40] not in out


def test_redact_columns_masks_values_in_json_and_tables() -> None:
    path = str(CAPTURES / "orm-demo-psycopg2.pcap")
    objs = objects(run("read", path, "--format", "jsonl", "--redact-columns", "*password*"))
    rows = [o for o in objs if o["type"] == "DataRow" and len(o["fields"]["values"]) == 4]
    assert rows and all(o["fields"]["values"][3] == MASK == o["fields"]["raw"][3] for o in rows)
    assert all(o["fields"]["values"][1] != MASK for o in rows)
    table = run("read", path, "--redact-columns", "re:hashed")
    assert "pbkdf2" not in table and "Demo" in table


def test_policy_rules() -> None:
    r = Redaction(column_patterns=("*password*", "re:^e.ail$"))
    assert r.hides_column("users_hashed_password") and r.hides_column("EMAIL")
    assert not r.hides_column("users_email") and not r.hides_column("id")
    assert not Redaction().hides_column("password")


def _messages(path: Path) -> list[Any]:
    from pgwire_inspect.capture import open_capture
    from pgwire_inspect.decode import decode_frames

    return [w.message for w in decode_frames(open_capture(path), ports=None).messages]


def _tcp_checksum_ok(frame_bytes: bytes) -> bool:
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    pkt = Ether(frame_bytes)
    sent = pkt[TCP].chksum
    del pkt[TCP].chksum
    return bool(Ether(bytes(pkt))[TCP].chksum == sent)


def test_write_pcap_redact_overwrites_secrets_only(tmp_path: Path) -> None:
    from pgwire_inspect.capture import open_capture

    for name in ("auth-md5", "auth-scram", "auth-password"):
        src = CAPTURES / f"{name}.pcap"
        out = tmp_path / f"{name}.pcap"
        run("read", str(src), "--write-pcap", str(out), "--redact")
        before, after = _messages(src), _messages(out)
        assert [m.name for m in before] == [m.name for m in after]
        secret = 0
        for a, b in zip(before, after, strict=True):
            assert len(a.raw) == len(b.raw)
            if type(a).secret_fields:
                secret += 1
                assert a.raw != b.raw and b"xxxx" in b.raw
            else:
                assert a.raw == b.raw
        assert secret >= 1, name
        changed = [g for f, g in zip(open_capture(src), open_capture(out), strict=True)
                   if f.data != g.data]
        assert changed and all(_tcp_checksum_ok(g.data) for g in changed)


def test_write_pcap_redact_columns(tmp_path: Path) -> None:
    out = tmp_path / "demo.pcap"
    run("read", str(CAPTURES / "orm-demo-psycopg2.pcap"), "--write-pcap", str(out), "--redact",
        "--redact-columns", "*password*")
    rows = [m for m in _messages(out) if m.name == "DataRow" and len(m.values) == 4]
    assert rows and all(set(m.values[3]) == {ord("x")} for m in rows)
    assert all(m.values[1] in (b"Demo", b"alice") for m in rows)
