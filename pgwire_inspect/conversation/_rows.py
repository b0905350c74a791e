"""Decoding the values of a connection's DataRows (a part of `Connection`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..protocol import DataRow
from ..types import ValueDecoder
from ._model import ResultSet, WireMessage

__all__ = ["RowDecoding"]


class RowDecoding:
    """`Connection`'s methods that turn DataRows into Python values.

    Attributes:
        decoder: the connection's `ValueDecoder` (it follows ParameterStatus).
        value_errors: values `decode_row` could not decode, so far.
    """

    decoder: ValueDecoder
    value_errors: int

    def decode_row(self, result: ResultSet, row: WireMessage) -> list[Any]:
        """Decode one DataRow of ``result`` into Python values with psycopg's loaders.

        Returns:
            One value per column (None for NULL). A value that cannot be decoded
            comes back as the `ValueDecodeError` describing why.
        """
        msg = row.message
        assert isinstance(msg, DataRow)
        decoder = self.decoder
        cached = self._decode_plan(result)
        _, types, plan, load_row = cached
        values = msg.values
        if len(values) != len(plan):
            types = [types[i] if i < len(types) else (0, 0) for i in range(len(values))]
            plan = decoder.row_plan(types)
        elif load_row is not None:
            try:
                return list(load_row(values))
            except Exception:
                pass  # value by value below, to say which value is wrong and why
        out: list[Any] = []
        append = out.append
        for raw, (load, size), (oid, fmt) in zip(values, plan, types, strict=True):
            if raw is None:
                append(None)
                continue
            if (size < 0 or len(raw) == size) and raw.__class__ is bytes:
                try:
                    append(load(raw))
                    continue
                except Exception:
                    pass
            try:  # the loader failed or the size is wrong: decode() says what to show
                append(decoder.decode(oid, fmt, raw))
            except Exception as exc:
                append(exc)
                self.value_errors += 1
        return out

    def decode_rows(self, result: ResultSet, rows: list[WireMessage]) -> list[Sequence[Any]]:
        """`decode_row` for several DataRows of ``result``, faster for big runs.

        Returns:
            One sequence of values per row (a tuple when every value loaded,
            else the list `decode_row` gives).
        """
        _, types, _, load_row = self._decode_plan(result)
        if load_row is None:
            return [self.decode_row(result, wm) for wm in rows]
        n = len(types)
        out: list[Sequence[Any]] = []
        append = out.append
        for wm in rows:
            values = wm.message.values  # type: ignore[attr-defined]
            if len(values) == n:
                try:
                    append(load_row(values))
                    continue
                except Exception:
                    pass
            append(self.decode_row(result, wm))
        return out

    def _decode_plan(self, result: ResultSet) -> Any:
        """(decoder generation, (OID, format) per column, loader per column, row loader or
        None), cached on the result until session state changes the loaders."""
        decoder = self.decoder
        cached = result._decode_plan
        if cached is None or cached[0] != decoder.generation:
            types = [(c.type_oid, result.formats[i] if i < len(result.formats) else 0)
                     for i, c in enumerate(result.columns)]
            cached = result._decode_plan = (decoder.generation, types, decoder.row_plan(types),
                                            decoder.sequence_loader(types))
        return cached
