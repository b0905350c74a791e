"""Recorded captures from a throwaway cluster: authentication methods, IPv6, tcpdump -i any.

captures/record.py logged in as one role per pg_hba.conf method (its
passwords are public test data, in NAME.json) and ran `select 1`. The
tests check the authentication exchange message by message and recompute
what the client had to send from the password, so a wrong byte span in
the decoder would show. The byte-for-byte checks against the relay's
streams are in test_recorded_captures.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from test_recorded_captures import CAPTURES, decode, decoded, names, of_type, reference, show

from pgwire_inspect.capture import open_capture
from pgwire_inspect.conversation import Connection
from pgwire_inspect.protocol import (
    AuthenticationMD5Password,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    MalformedMessage,
    PasswordMessage,
    Query,
    SASLInitialResponse,
    SASLResponse,
    StartupMessage,
)


def login_checks(name: str) -> Connection:
    """Checks shared by every login capture; returns its connection."""
    conn = decoded(name)
    ref = reference(name)
    startup = conn.messages[0].message
    assert isinstance(startup, StartupMessage)
    assert startup.parameters["user"] == ref["user"]
    # The authentication exchange is the startup phase; then the query.
    assert names(conn.startup, "B")[-2:] == ["BackendKeyData", "ReadyForQuery"]
    q = conn.queries[-1]
    assert q.sql == "select 1 as one, current_user as who"
    assert [[show(v) for v in conn.decode_row(r, row)] for r in q.results
            for row in r.rows] == ref["rows"] == [["1", ref["user"]]]
    return conn


def test_scram_sha_256_exchange() -> None:
    conn = login_checks("auth-scram")
    ref = reference("auth-scram")
    assert names(conn.startup, "F") == ["StartupMessage", "SASLInitialResponse", "SASLResponse"]
    b = names(conn.startup, "B")
    assert b[:4] == ["AuthenticationSASL", "AuthenticationSASLContinue",
                     "AuthenticationSASLFinal", "AuthenticationOk"]
    (sasl,) = of_type(conn, AuthenticationSASL)
    assert sasl.code == 10 and sasl.mechanisms == ("SCRAM-SHA-256",)
    (first,) = of_type(conn, SASLInitialResponse)
    (cont,) = of_type(conn, AuthenticationSASLContinue)
    (final,) = of_type(conn, SASLResponse)
    (done,) = of_type(conn, AuthenticationSASLFinal)
    assert first.mechanism == "SCRAM-SHA-256" and first.data is not None
    assert (cont.code, done.code) == (11, 12)

    # RFC 5802 section 3 / RFC 7677: recompute the proof and the server signature.
    client_first = first.data.decode()
    assert client_first.startswith("n,,")
    server_first = cont.data.decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(dict(kv.split("=", 1) for kv in client_first[3:].split(","))["r"])
    client_final = final.data.decode()
    without_proof, proof = client_final.rsplit(",p=", 1)
    assert without_proof == f"c=biws,r={attrs['r']}"
    auth_message = f"{client_first[3:]},{server_first},{without_proof}".encode()
    salted = hashlib.pbkdf2_hmac("sha256", ref["password"].encode(),
                                 base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    assert base64.b64decode(proof) == bytes(a ^ b for a, b in zip(client_key, signature,
                                                                   strict=True))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    expected = hmac.digest(server_key, auth_message, "sha256")
    assert done.data == b"v=" + base64.b64encode(expected)


def test_md5_password_exchange() -> None:
    conn = login_checks("auth-md5")
    ref = reference("auth-md5")
    assert names(conn.startup, "F") == ["StartupMessage", "PasswordMessage"]
    assert names(conn.startup, "B")[:2] == ["AuthenticationMD5Password", "AuthenticationOk"]
    (req,) = of_type(conn, AuthenticationMD5Password)
    (answer,) = of_type(conn, PasswordMessage)
    assert req.code == 5 and len(req.salt) == 4
    # PostgreSQL docs, "Password Authentication": md5(md5(password + user) + salt).
    inner = hashlib.md5((ref["password"] + ref["user"]).encode()).hexdigest()
    assert answer.password == "md5" + hashlib.md5(inner.encode() + req.salt).hexdigest()


def test_cleartext_password_exchange() -> None:
    conn = login_checks("auth-password")
    ref = reference("auth-password")
    assert names(conn.startup, "F") == ["StartupMessage", "PasswordMessage"]
    assert names(conn.startup, "B")[:2] == ["AuthenticationCleartextPassword",
                                            "AuthenticationOk"]
    (answer,) = of_type(conn, PasswordMessage)
    assert answer.password == ref["password"] == "secret-password"


def test_trust_login_has_no_password() -> None:
    conn = login_checks("auth-trust")
    assert names(conn.startup, "F") == ["StartupMessage"]
    assert names(conn.startup, "B")[0] == "AuthenticationOk"
    assert of_type(conn, PasswordMessage) == []


@pytest.mark.parametrize("name", ["auth-scram", "auth-md5", "auth-password", "auth-trust"])
def test_logins_are_to_the_throwaway_cluster(name: str) -> None:
    conn = decoded(name)
    host, port = reference(name)["server"]
    assert conn.server == (host, port) and port != 5432


def test_ipv6_connection() -> None:
    conn = decoded("ipv6")
    ref = reference("ipv6")
    assert conn.client[0] == conn.server[0] == "::1"
    assert conn.server_text == f"[::1]:{ref['server'][1]}"
    frames = list(open_capture(CAPTURES / "ipv6.pcap"))
    # Ethernet (Linux loopback) carrying IPv6 (EtherType 0x86DD).
    assert {(f.linktype, f.data[12:14]) for f in frames} == {(1, b"\x86\xdd")}
    q = conn.queries[-1]
    assert [[show(v) for v in conn.decode_row(r, row)] for r in q.results
            for row in r.rows] == ref["rows"]
    assert ref["rows"][0][0] == "::1/128"  # the server saw the client on ::1


def test_tcpdump_any_capture_uses_linux_cooked_headers() -> None:
    ref = reference("tcpdump-any")
    frames = list(open_capture(CAPTURES / "tcpdump-any.pcap"))
    linktypes = {f.linktype for f in frames}
    assert linktypes <= {113, 276} and len(linktypes) == 1
    assert ("LINUX_SLL2" in ref["tcpdump"]) == (linktypes == {276})
    result = decode("tcpdump-any")
    assert result.skipped == {} and result.tcp_frames == len(frames)


def test_tcpdump_any_capture_decodes_to_the_session() -> None:
    ref = reference("tcpdump-any")
    result = decode("tcpdump-any")
    assert len(result.connections) == 1
    conn = result.connections[0]
    assert conn.handshake and conn.gaps == []
    assert set(conn.ended.values()) == {"FIN"}
    assert not [w for w in conn.messages if isinstance(w.message, MalformedMessage)]
    first = next(w.message for w in conn.messages if w.direction == "F")
    assert isinstance(first, StartupMessage) and first.offset == 0
    assert [m.sql for m in of_type(conn, Query)] == ref["sent"]
    assert [q.sql for q in conn.queries] == ref["sent"]
    assert all(q.error is None and q.status == "I" for q in conn.queries)
    last = conn.queries[-1]
    assert [[show(v) for v in conn.decode_row(r, row)] for r in last.results
            for row in r.rows] == ref["rows"]
    assert names(conn.trailing) == ["Terminate"]
