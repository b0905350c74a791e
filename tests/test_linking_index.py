"""Rows are matched to ORM instances through an index: the same answers as a full scan."""

from __future__ import annotations

import enum
import random
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pgwire_inspect.linking import _instance_for, _InstanceIndex
from pgwire_inspect.orm import InstanceRecord, RecordedStatement


class Color(str, enum.Enum):  # equal to its str value, hashed otherwise
    RED = "red"
    BLUE = "blue"


VALUES: list[Any] = [1, 1.0, Decimal("1.00"), True, 2, "red", "blue", Color.RED, None,
                     b"\x01", [1], {"k": 1}, float("nan")]


def _instance(rng: random.Random, statement: int) -> InstanceRecord:
    cls = rng.choice(["User", "Address"])
    attrs = {a: rng.choice(VALUES) for a in ("id", "name", "extra") if rng.random() < 0.8}
    cols = {a: f"{cls.lower()}_{a}" for a in ("id", "name", "extra")}
    return InstanceRecord(cls, (attrs.get("id"),), attrs, {}, cols, statement, 0)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(0, 2**32 - 1))
def test_the_index_answers_as_the_scan_does(seed: int) -> None:
    rng = random.Random(seed)
    stmt = RecordedStatement(1, 0, "select", None)
    if rng.random() < 0.5:  # classes whose attributes this statement's result holds
        stmt.attribute_columns = {"User": {"id": "user_id", "name": "user_name"}}
    instances = [_instance(rng, rng.choice([0, 1, None])) for _ in range(rng.randint(0, 12))]
    columns = ["user_id", "user_name", "address_id", "address_name", "address_extra"]
    shown = set(rng.sample(columns, rng.randint(1, len(columns))))
    index = _InstanceIndex(stmt, instances, shown)
    for _ in range(10):
        row = {c: rng.choice(VALUES) for c in shown if rng.random() < 0.95}
        got, want = index.find(row), _instance_for(row, stmt, instances)
        assert got[0] is want[0] and got[1:] == want[1:]
