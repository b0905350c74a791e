"""Helpers of the ORM tests: the test server's DSN and drivers, the demo's columns,
a logging TCP relay, wire-format pickers."""

from __future__ import annotations

import os
import socket
import struct
import threading
import uuid

from pgwire_inspect.orm import PreparedUrl, prepare_url

DSN = os.environ.get("PGWIRE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DRIVERS = ["psycopg2", "psycopg"]
ATTRIBUTES = ["id", "username", "email", "hashed_password"]
LEGACY_COLUMNS = {key: f"users_{key}" for key in ATTRIBUTES}  # session.query(User)
SELECT_COLUMNS = {key: key for key in ATTRIBUTES}  # select(User)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Relay:
    """A TCP relay between the client and the server that keeps the frontend bytes."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frontend = bytearray()
        self.client_port: int | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, driver: str, **query: str) -> PreparedUrl:
        relayed = prepare_url(DSN).url.set(host="127.0.0.1", port=self.port, query=query)
        return prepare_url(relayed.render_as_string(hide_password=False), driver)

    def _serve(self) -> None:
        client, peer = self.listener.accept()
        self.client_port = peer[1]
        server = socket.create_connection(self.upstream)
        back = threading.Thread(target=self._pump, args=(server, client, None), daemon=True)
        back.start()
        self._pump(client, server, self.frontend)
        back.join(5)
        client.close()
        server.close()
        self.listener.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        while data := src.recv(65536):
            if keep is not None:
                keep += data
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)

    def startup(self) -> dict[str, str]:
        """The StartupMessage's parameters (no SSLRequest may come before it)."""
        self.thread.join(5)
        data = bytes(self.frontend)
        (length,) = struct.unpack_from("!i", data, 0)
        assert struct.unpack_from("!i", data, 4) == (196608,)  # protocol 3.0
        words = data[8 : length - 1].split(b"\0")[:-1]
        return {k.decode(): v.decode() for k, v in zip(words[::2], words[1::2], strict=True)}

    def messages(self) -> list[tuple[str, bytes]]:
        """Frontend messages after the StartupMessage: (type, body)."""
        self.thread.join(5)
        data = bytes(self.frontend)
        (length,) = struct.unpack_from("!i", data, 0)
        assert struct.unpack_from("!i", data, 4) == (196608,)  # protocol 3.0, no SSLRequest
        out: list[tuple[str, bytes]] = []
        offset = length
        while offset < len(data):
            kind = chr(data[offset])
            (length,) = struct.unpack_from("!i", data, offset + 1)
            out.append((kind, data[offset + 5 : offset + 1 + length]))
            offset += 1 + length
        return out


def cstrings(body: bytes, count: int) -> list[str]:
    return [part.decode() for part in body.split(b"\0")[:count]]


def bind_values(body: bytes) -> tuple[str, list[bytes | None]]:
    """Bind (F): the statement name and the parameter values (PostgreSQL docs, Message Formats)."""
    _portal, name = cstrings(body, 2)
    offset = len(_portal) + len(name) + 2
    (formats,) = struct.unpack_from("!h", body, offset)
    offset += 2 + 2 * formats
    (count,) = struct.unpack_from("!h", body, offset)
    offset += 2
    values: list[bytes | None] = []
    for _ in range(count):
        (size,) = struct.unpack_from("!i", body, offset)
        offset += 4
        values.append(None if size < 0 else body[offset : offset + size])
        offset += max(size, 0)
    return name, values
