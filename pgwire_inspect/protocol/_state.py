"""State shared by the parsers of a connection's two directions, and the NEED_DATA sentinel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ._base import Message
from ._frontend import GSSResponse, PasswordMessage, SASLInitialResponse, SASLResponse

__all__ = ["NEED_DATA", "NeedData", "SessionState", "frontend_p_class"]


class NeedData:
    """The sentinel type of `NEED_DATA`: the parser needs more bytes."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass
class SessionState:
    """What both directions of a connection need to know about each other.

    Attributes:
        frontend_startup: the frontend is still in the startup phase, where
            packets have no type byte (StartupMessage, SSLRequest, ...).
        pending_answers: one-byte answers the backend owes: "SSL" after an
            SSLRequest, "GSS" after a GSSENCRequest.
        auth_code: the code of the last Authentication* request, which says
            what a frontend 'p' message is.
        encrypted_from: per direction, the stream offset where TLS or GSSAPI
            encryption starts; nothing from there on is decoded.
        encrypted_by: "TLS" or "GSSAPI" once encryption has started.
        encrypted_bytes: per direction, encrypted bytes seen.
        startup_parameters: the StartupMessage's parameters.
        parameters: the latest value of each ParameterStatus.
    """

    frontend_startup: bool = True
    pending_answers: list[str] = field(default_factory=list)
    auth_code: int | None = None
    encrypted_from: dict[str, int] = field(default_factory=dict)
    encrypted_by: str | None = None
    encrypted_bytes: dict[str, int] = field(default_factory=lambda: {"F": 0, "B": 0})
    startup_parameters: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)


def frontend_p_class(state: SessionState) -> type[Message]:
    """Which message a frontend 'p' is, from the authentication request it answers
    (PostgreSQL docs, "Message Formats": PasswordMessage, SASLInitialResponse,
    SASLResponse and GSSResponse share the type byte)."""
    code = state.auth_code
    if code == 10:
        return SASLInitialResponse
    if code in (11, 12):
        return SASLResponse
    if code in (7, 8, 9):
        return GSSResponse
    return PasswordMessage
