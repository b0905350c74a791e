"""Pairs an ORM run with the wire: statements with queries, DataRows with instances.

The ORM side (`pgwire_inspect.orm`) records what SQLAlchemy executed and
built; the conversation (`pgwire_inspect.conversation`) holds what crossed
the wire. This module matches the two:

- each wire query is matched, in order, to the RecordedStatement whose
  ``wire_sql`` is its SQL text; queries that match none are the driver's own
  (BEGIN, ROLLBACK, COMMIT) or SQLAlchemy's set-up on first connect;
- each DataRow of a matched query is matched to the ORM instance whose
  mapped attributes equal the row's decoded values, through the statement's
  result column for each attribute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from .conversation import Connection, QueryExchange, ResultSet, WireMessage
from .orm import InstanceRecord, OrmRun, OrmStepResult, RecordedStatement

__all__ = ["LinkedInstance", "LinkedQuery", "LinkedRow", "LinkedRun", "LinkedStep", "link_run"]

_BEGIN = re.compile(r"^\s*(BEGIN|START TRANSACTION)\b", re.IGNORECASE)
_TXN = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE|END)\b",
                  re.IGNORECASE)


@dataclass
class LinkedRow:
    """One DataRow and the ORM instance built from (or matched to) it.

    Attributes:
        result: the result set the row belongs to.
        row: the DataRow on the wire.
        number: 1-based row number within its result.
        values: the row's decoded values, by result column name.
        instance: the matching instance record, or None.
        built: True when this statement's row built the instance; False when
            the instance was already in the session's identity map.
        columns: attribute key → the result column of this row it was matched through.
    """

    result: ResultSet
    row: WireMessage
    number: int
    values: list[Any]
    instance: InstanceRecord | None = None
    built: bool = False
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class LinkedQuery:
    """A wire query and what it was for.

    Attributes:
        query: the query on the wire.
        role: "orm" (a statement SQLAlchemy executed), "driver" (the driver's
            transaction control) or "setup" (SQLAlchemy's first-connect queries).
        statement: the matching RecordedStatement, for role "orm".
        rows: the DataRows of the query linked to instances.
    """

    query: QueryExchange
    role: str
    statement: RecordedStatement | None = None
    rows: list[LinkedRow] = field(default_factory=list)


@dataclass
class LinkedStep:
    """One ORM step and the wire queries it caused."""

    step: OrmStepResult
    queries: list[LinkedQuery] = field(default_factory=list)


@dataclass
class LinkedInstance:
    """An instance and the DataRow it was built from (None if not found on the wire)."""

    instance: InstanceRecord
    row: LinkedRow | None


@dataclass
class LinkedRun:
    """An ORM run laid over the conversation of its connection.

    Attributes:
        conn: the ORM's connection on the wire (None if it was not captured).
        setup: queries before the program's first statement.
        steps: one entry per ORM step.
        teardown: queries after the last step (the closing ROLLBACK ...).
        instances: every distinct instance, with the DataRow that built it.
        unmatched: recorded statements no wire query matched.
    """

    conn: Connection | None
    setup: list[LinkedQuery] = field(default_factory=list)
    steps: list[LinkedStep] = field(default_factory=list)
    teardown: list[LinkedQuery] = field(default_factory=list)
    instances: list[LinkedInstance] = field(default_factory=list)
    unmatched: list[RecordedStatement] = field(default_factory=list)


def _norm(sql: str | None) -> str:
    return " ".join((sql or "").split())


def _matches(q: QueryExchange, st: RecordedStatement) -> bool:
    wire = _norm(q.sql)
    return bool(wire) and wire in (_norm(st.wire_sql), _norm(st.statement))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _instance_for(values: dict[str, Any], st: RecordedStatement, instances: list[InstanceRecord]
                  ) -> tuple[InstanceRecord | None, bool, dict[str, str]]:
    best: tuple[InstanceRecord | None, bool, dict[str, str]] = (None, False, {})
    for inst in instances:
        cols = st.attribute_columns.get(inst.class_name) or (
            inst.columns if inst.statement == st.index else None)
        if not cols:
            continue
        keys = {a: c for a, c in cols.items() if a in inst.attributes and c in values}
        if not keys or not all(_same(values[c], inst.attributes[a]) for a, c in keys.items()):
            continue
        if inst.statement == st.index:
            return inst, True, keys
        if best[0] is None:
            best = (inst, False, keys)
    return best


def link_run(run: OrmRun, conn: Connection | None) -> LinkedRun:
    """Match the ORM run with the conversation of its connection.

    Args:
        run: what the ORM side recorded.
        conn: the captured connection of the run (the one from ``run.client_port``).

    Returns:
        The `LinkedRun`; statements that match no wire query are listed in ``unmatched``.
    """
    linked = LinkedRun(conn)
    linked.steps = [LinkedStep(s) for s in run.steps]
    if conn is None:
        linked.unmatched = list(run.statements)
        return linked
    all_instances = [i for s in run.steps for i in s.instances]
    queries = conn.queries
    statements = run.statements
    si = 0
    pending: list[LinkedQuery] = []
    seen_orm = False
    for q in queries:
        st = statements[si] if si < len(statements) else None
        if st is not None and _matches(q, st):
            lq = LinkedQuery(q, "orm", st)
            _link_rows(conn, lq, st, all_instances)
            step = linked.steps[st.step] if st.step < len(linked.steps) else None
            # Driver queries right before the statement (BEGIN) belong to its step;
            # anything before the first statement that is not BEGIN is set-up.
            if not seen_orm:
                tail_start = len(pending)
                while tail_start > 0 and _BEGIN.match(pending[tail_start - 1].query.sql or ""):
                    tail_start -= 1
                linked.setup.extend(pending[:tail_start])
                pending = pending[tail_start:]
            if step is not None:
                step.queries.extend(pending)
                step.queries.append(lq)
            pending = []
            seen_orm = True
            si += 1
            continue
        role = "driver" if _TXN.match(q.sql or "") else "setup"
        if seen_orm and role == "setup":
            role = "driver"
        pending.append(LinkedQuery(q, role))
    if not seen_orm:
        linked.setup.extend(pending)
    else:
        linked.teardown.extend(pending)
    linked.unmatched = list(statements[si:])
    # Every distinct instance with the DataRow that built it.
    rows_by_stmt: dict[int, list[LinkedRow]] = {}
    for step in linked.steps:
        for lq in step.queries:
            if lq.statement is not None:
                rows_by_stmt[lq.statement.index] = lq.rows
    # statement -> (class, identity) -> the first row that built that instance
    builders: dict[int, dict[tuple[str, tuple[Any, ...]], LinkedRow]] = {}
    for index, rows in rows_by_stmt.items():
        first: dict[tuple[str, tuple[Any, ...]], LinkedRow] = {}
        builders[index] = first
        for r in rows:
            if r.instance is not None and r.built:
                first.setdefault((r.instance.class_name, r.instance.identity), r)
    seen: set[tuple[str, tuple[Any, ...]]] = set()
    for inst in all_instances:
        key = (inst.class_name, inst.identity)
        if key in seen:
            continue
        seen.add(key)
        by_key = builders.get(inst.statement, {}) if inst.statement is not None else {}
        linked.instances.append(LinkedInstance(inst, by_key.get(key)))
    return linked


def _link_rows(conn: Connection, lq: LinkedQuery, st: RecordedStatement,
               instances: list[InstanceRecord]) -> None:
    for result in lq.query.results:
        names = [c.name for c in result.columns]
        index = _InstanceIndex(st, instances, set(names))
        for n, row in enumerate(result.rows, 1):
            values = conn.decode_row(result, row)
            by_name = dict(zip(names, values, strict=False))
            inst, built, cols = index.find(by_name)
            lq.rows.append(LinkedRow(result, row, n, values, inst, built, cols))


#: Value types whose hash agrees with == across the types decoders and the ORM
#: give (exact types: a subclass, e.g. a str Enum, may compare equal to a str
#: while hashing differently).
_INDEXABLE = frozenset({int, bool, float, str, bytes, Decimal, datetime, date, time,
                        timedelta, UUID, type(None)})


class _InstanceIndex:
    """`_instance_for` over one result's rows, without scanning every instance per row.

    Instances are indexed by the values of the attributes they would be
    compared on; instances with values of other types are scanned as
    `_instance_for` does. The answer for each row is the same: the first
    matching instance built by ``st``, else the first other matching one.
    """

    def __init__(self, st: RecordedStatement, instances: list[InstanceRecord],
                 columns: set[str]) -> None:
        self.st = st
        self.instances = instances
        # keys (attribute, column) pairs -> values of the attributes -> positions
        self.groups: dict[tuple[tuple[str, str], ...], dict[tuple[Any, ...], list[int]]] = {}
        self.scanned: list[int] = []  # positions of instances that cannot be indexed
        for pos, inst in enumerate(instances):
            cols = st.attribute_columns.get(inst.class_name) or (
                inst.columns if inst.statement == st.index else None)
            if not cols:
                continue
            keys = tuple((a, c) for a, c in cols.items() if a in inst.attributes and c in columns)
            if not keys:
                continue
            sig = tuple(inst.attributes[a] for a, _ in keys)
            if all(type(v) in _INDEXABLE for v in sig):
                self.groups.setdefault(keys, {}).setdefault(sig, []).append(pos)
            else:
                self.scanned.append(pos)

    def find(self, values: dict[str, Any]) -> tuple[InstanceRecord | None, bool, dict[str, str]]:
        """The instance the row ``values`` (by column name) built, as `_instance_for` says."""
        candidates: list[int] = []
        for keys, by_sig in self.groups.items():
            try:
                sig = tuple(values[c] for _, c in keys)
            except KeyError:  # a short row: compare as _instance_for does
                return _instance_for(values, self.st, self.instances)
            if not all(type(v) in _INDEXABLE for v in sig):
                return _instance_for(values, self.st, self.instances)
            candidates += by_sig.get(sig, ())
        if self.scanned:
            candidates += self.scanned
        if not candidates:
            return None, False, {}
        return _instance_for(values, self.st, [self.instances[p] for p in sorted(candidates)])
