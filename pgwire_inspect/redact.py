"""What the views hide: secrets on the wire and columns the user asks to mask.

By default the contents of PasswordMessage (cleartext passwords and md5
hashes), SASLInitialResponse and SASLResponse (SCRAM client messages and
proofs) are masked wherever they would appear; ``--show-secrets`` shows
them. ``--redact-columns PATTERN`` masks the values of matching columns
(a glob such as ``*password*``, or a regular expression written ``re:...``,
matched case-insensitively against column and attribute names).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from .protocol import Message

__all__ = ["MASK", "Redaction", "mask_bytes"]

#: What a masked value is shown as.
MASK = "***"


def mask_bytes(data: bytes) -> bytes:
    """Bytes of the same length with every byte an ASCII 'x' (for pcap redaction)."""
    return b"x" * len(data)


@dataclass(frozen=True)
class Redaction:
    """The masking policy of one run.

    Attributes:
        show_secrets: show passwords and SASL data (for teaching).
        column_patterns: patterns of column/attribute names whose values are masked.
    """

    show_secrets: bool = False
    column_patterns: tuple[str, ...] = ()
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False,
                                                   compare=False)

    def __post_init__(self) -> None:
        compiled = []
        for pat in self.column_patterns:
            if pat.startswith("re:"):
                compiled.append(re.compile(pat[3:], re.IGNORECASE))
            else:
                compiled.append(re.compile(fnmatch.translate(pat), re.IGNORECASE))
        object.__setattr__(self, "_compiled", tuple(compiled))

    def hides_column(self, name: str) -> bool:
        """Whether the values of column (or attribute) ``name`` are masked."""
        # Globs are anchored by fnmatch.translate; regular expressions search anywhere.
        return any(p.search(name) for p in self._compiled)

    def hides_field(self, message: Message, field_name: str) -> bool:
        """Whether ``field_name`` (a field or span name) of ``message`` is a masked secret."""
        return not self.show_secrets and field_name in type(message).secret_fields

    def message_fields(self, message: Message) -> dict[str, Any]:
        """``message.fields()`` with secret fields masked."""
        fields = message.fields()
        if not self.show_secrets:
            for name in type(message).secret_fields:
                if fields.get(name) is not None:
                    fields[name] = MASK
        return fields

    def summary(self, message: Message) -> str:
        """A one-line summary of the message's fields, secrets masked."""
        parts = []
        for key, value in self.message_fields(message).items():
            text = value if value == MASK else repr(value)
            parts.append(f"{key}={text if len(text) <= 60 else text[:57] + '...'}")
        return ", ".join(parts)
