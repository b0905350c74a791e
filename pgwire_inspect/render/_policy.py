"""The masking policy the table views follow (set once per command by the CLI)."""

from __future__ import annotations

from ..redact import Redaction

__all__ = ["current", "set_redaction"]

_current = Redaction()


def set_redaction(redaction: Redaction) -> None:
    """Make ``redaction`` the policy of every table view from now on."""
    global _current
    _current = redaction


def current() -> Redaction:
    """The policy in force (secrets masked, no columns masked, by default)."""
    return _current
