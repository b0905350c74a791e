"""Record what an ORM run does through SQLAlchemy's events, for sync and asyncio runs.

Recording uses SQLAlchemy's public event hooks: ``ConnectionEvents``
(``before_cursor_execute``, ``after_cursor_execute``, ``handle_error``),
``DialectEvents`` (``do_execute``), ``PoolEvents`` (``connect``) and
``InstanceEvents`` (``load``). With the asyncio extension the hooks are set
on the async engine's ``sync_engine``, where they fire the same way. A few
private attributes are read, each guarded: ``SQLCompiler._result_columns``
(which column objects each result column carries), psycopg 3's
``Cursor._query`` (the query text it sent), SQLAlchemy's async cursor
adapter's ``_cursor`` (the psycopg ``AsyncCursor`` inside) and asyncpg's
``Connection._transport`` (its socket's local address: asyncpg has no
public accessor for it).
"""

from __future__ import annotations

import codecs
import contextlib
import copy
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine, MappingResult, Result, Row, RowMapping, ScalarResult
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import InstanceState, Mapper, Query, Session

from pgwire_inspect.orm._model import InstanceRecord, OrmStepResult, RecordedStatement

__all__ = ["Recorder", "one_line", "step_error"]

_REPR_LIMIT = 1000
_FLATTEN_DEPTH = 4


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def step_error(exc: Exception) -> str:
    """The one-line error of a failed step: the DBAPI's own message for SQL errors."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return one_line(exc.orig)
    if isinstance(exc, SQLAlchemyError):
        return one_line(exc)
    return f"{type(exc).__name__}: {one_line(exc)}"


def _python_codec(pg_encoding: str | None) -> str:
    """A Python codec name for a PostgreSQL or Python encoding name (``UTF8``, ``WIN1252``)."""
    for name in (pg_encoding, re.sub(r"^WIN", "cp", pg_encoding or "")):
        if name:
            with contextlib.suppress(LookupError):
                return codecs.lookup(name).name
    return "utf-8"


def _client_port(driver_connection: Any) -> int | None:
    """The local TCP port of a psycopg2, psycopg 3 or asyncpg connection's socket."""
    transport = getattr(driver_connection, "_transport", None)  # asyncpg.Connection
    if transport is not None:
        name = transport.get_extra_info("sockname")
    else:
        fd = driver_connection.fileno()
        with socket.socket(fileno=os.dup(fd)) as sock:
            name = sock.getsockname()
    return int(name[1]) if isinstance(name, tuple) else None


def _parameter_status(driver_connection: Any, name: str) -> str | None:
    """A ParameterStatus value the server reported (``server_version``), or None."""
    info = getattr(driver_connection, "info", None)  # psycopg2 and psycopg 3
    if info is not None:
        value = info.parameter_status(name)
    else:  # asyncpg: ConnectionSettings exposes every ParameterStatus as an attribute
        value = getattr(driver_connection.get_settings(), name, None)
    return value if isinstance(value, str) else None


def _wire_sql(cursor: Any, encoding: str) -> str | None:
    """The query text the driver sent: psycopg2 ``cursor.query``, psycopg 3 ``_query.query``."""
    query = None
    for candidate in (cursor, getattr(cursor, "_cursor", None)):  # the async adapter's cursor
        query = getattr(candidate, "query", None)
        if query is None:
            query = getattr(getattr(candidate, "_query", None), "query", None)
        if query is not None:
            break
    if query is None:
        return None
    if isinstance(query, str):
        return query
    return bytes(query).decode(encoding, errors="replace")


def _column_lookup(compiled: Any, names: list[str]) -> dict[Any, str]:
    """Column object -> result column name, from the compiled statement's result map.

    Each entry of ``_result_columns`` lists the column objects a result column
    stands for; their ``proxy_set`` reaches the table columns through aliases.
    Names come from ``cursor.description`` by position when the counts agree.
    The first result column that carries a table column wins.
    """
    entries = getattr(compiled, "_result_columns", None) or []
    positional = len(entries) == len(names)
    lookup: dict[Any, str] = {}
    try:
        for position, entry in enumerate(entries):
            name = names[position] if positional else str(entry[0])
            for obj in entry[2]:
                for column in getattr(obj, "proxy_set", ()):
                    lookup.setdefault(column, name)
    except (TypeError, IndexError):  # a private structure that changed shape
        return {}
    return lookup


def _entity_mappers(compiled: Any) -> list[Mapper[Any]]:
    """The mappers of the ORM entities a compiled statement selects (may be empty)."""
    try:
        descriptions = compiled.statement.column_descriptions
    except Exception:  # Core text, DML, or anything without ORM entities
        return []
    mappers: list[Mapper[Any]] = []
    for description in descriptions:
        mapper = getattr(inspect(description.get("entity"), raiseerr=False), "mapper", None)
        if isinstance(mapper, Mapper) and mapper not in mappers:
            mappers.append(mapper)
    return mappers


def _mapper_columns(mapper: Mapper[Any], lookup: dict[Any, str]) -> dict[str, str]:
    """Attribute key -> result column name for one mapper's column attributes."""
    columns: dict[str, str] = {}
    for prop in mapper.column_attrs:
        for column in prop.columns:
            name = lookup.get(column)
            if name is not None:
                columns[prop.key] = name
                break
    return columns


def _consume(value: Any) -> Any:
    """Fetch a Result/ScalarResult/MappingResult/Query into a list; anything else as is."""
    if isinstance(value, (Result, ScalarResult, MappingResult, Query)):
        return value.all()
    return value


def _flatten(value: Any, out: list[InstanceState[Any]], depth: int = 0,
             seen: set[int] | None = None) -> None:
    """Collect the ORM instance states in a return value (rows, lists, tuples, dicts),
    each once, in the order met (``seen``: the ids of the states in ``out``)."""
    if value is None or depth > _FLATTEN_DEPTH or isinstance(value, (str, bytes)):
        return
    if seen is None:
        seen = {id(s) for s in out}
    state = inspect(value, raiseerr=False)
    if isinstance(state, InstanceState):
        if id(state) not in seen:
            seen.add(id(state))
            out.append(state)
        return
    items: Any
    if isinstance(value, (RowMapping, dict)):
        items = value.values()
    elif isinstance(value, (Row, list, tuple, set, frozenset)):
        items = value
    else:
        return
    for item in items:
        _flatten(item, out, depth + 1, seen)


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # a user __repr__ that fails does not fail the step
        text = f"<repr failed: {type(exc).__name__}: {one_line(exc)}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 1] + "…"


def _snapshot_value(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


class Recorder:
    """Listens on one engine (and on every mapper's ``load``) during one run.

    Args:
        engine: the sync engine to listen on (``AsyncEngine.sync_engine`` for
            an asyncio run).
        statement_is_wire: True for asyncpg, whose Parse message carries the
            statement exactly as SQLAlchemy handed it to the cursor (the
            cursor keeps no copy of the text it sent).

    A step goes ``start_step`` → the step's code → ``take_value`` (in sync
    code: inside ``AsyncSession.run_sync`` for an asyncio run, since it may
    lazy-load) → ``end_step``.
    """

    def __init__(self, engine: Engine, *, statement_is_wire: bool = False) -> None:
        self.statements: list[RecordedStatement] = []
        self.setup_statements: list[str] = []
        self.step = -1
        self.session: Session | None = None
        self.client_port: int | None = None
        self.server_version: str | None = None
        self.encoding = "utf-8"
        self._statement_is_wire = statement_is_wire
        self._pending: tuple[RecordedStatement, Any] | None = None
        self._lookups: list[dict[Any, str]] = []
        self._entities: list[list[Mapper[Any]]] = []
        self._compile_states: list[Any] = []
        self._built_by: dict[InstanceState[Any], int | None] = {}
        self._step_loads: list[InstanceState[Any]] = []
        self._first = 0
        # Strong references to every returned value and loaded instance: the
        # session's identity map holds instances weakly, and a program's later
        # steps must find earlier steps' instances there, as a script holding
        # them in variables would.
        self._keep: list[Any] = []
        event.listen(engine, "connect", self._on_connect)
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "handle_error", self._on_error)
        event.listen(engine, "do_execute", self._do_execute)
        event.listen(engine, "do_execute_no_params", self._do_execute_no_params)
        self.on_load: Callable[[Any, Any], None] = self._on_load

    # -- events ----------------------------------------------------------------

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        # The asyncio extension hands over its adapter; the driver's own
        # connection (psycopg.AsyncConnection, asyncpg.Connection) is inside.
        driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.client_port = _client_port(driver)
        with contextlib.suppress(Exception):
            self.server_version = _parameter_status(driver, "server_version")
        # psycopg 3 gives a Python codec name, psycopg2 the PostgreSQL one;
        # asyncpg always asks for UTF8 (client_encoding in its StartupMessage).
        info = getattr(driver, "info", None)
        self.encoding = _python_codec(
            getattr(info, "encoding", None) or getattr(driver, "encoding", None)
        )

    def _do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        if self._pending is None:
            self.setup_statements.append(statement)

    def _do_execute_no_params(self, cursor: Any, statement: str, context: Any) -> None:
        if self._pending is None:
            self.setup_statements.append(statement)

    def _before(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        record = RecordedStatement(
            index=len(self.statements),
            step=self.step,
            statement=statement,
            parameters=parameters,
            started=time.time(),
        )
        self.statements.append(record)
        self._pending = (record, cursor)
        compiled = getattr(context, "compiled", None)
        self._lookups.append({})
        self._entities.append(_entity_mappers(compiled) if compiled is not None else [])
        self._compile_states.append(getattr(compiled, "compile_state", None))

    def _sent(self, record: RecordedStatement, cursor: Any) -> str | None:
        if self._statement_is_wire:
            return record.statement
        return _wire_sql(cursor, self.encoding)

    def _after(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        if self._pending is None:
            return
        record, _ = self._pending
        self._pending = None
        record.ended = time.time()
        record.wire_sql = self._sent(record, cursor)
        record.result_columns = [str(d[0]) for d in cursor.description or ()]
        record.rowcount = cursor.rowcount if isinstance(cursor.rowcount, int) else -1
        compiled = getattr(context, "compiled", None)
        if compiled is not None:
            self._lookups[record.index] = _column_lookup(compiled, record.result_columns)

    def _on_error(self, exception_context: Any) -> None:
        # A listener that raises here would replace the user's error: never raise.
        with contextlib.suppress(Exception):
            if self._pending is None:
                return
            record, cursor = self._pending
            self._pending = None
            record.ended = time.time()
            record.error = one_line(exception_context.original_exception)
            record.wire_sql = self._sent(record, cursor)

    def _on_load(self, target: Any, query_context: Any) -> None:
        if self.session is None or getattr(query_context, "session", None) is not self.session:
            return
        state = inspect(target)
        compile_state = getattr(query_context, "compile_state", None)
        built_by: int | None = None
        for index in range(len(self.statements) - 1, -1, -1):
            if self._compile_states[index] is compile_state:
                built_by = index
                break
        if built_by is None and self.statements:
            built_by = len(self.statements) - 1
        self._built_by.setdefault(state, built_by)
        self._step_loads.append(state)
        self._keep.append(target)

    # -- steps -------------------------------------------------------------------

    def _attribute_columns(self, index: int) -> dict[str, dict[str, str]]:
        lookup = self._lookups[index]
        if not lookup:
            return {}
        seeds = list(self._entities[index])
        seeds += [s.mapper for s, built in self._built_by.items() if built == index]
        mappers: list[Mapper[Any]] = []
        for seed in seeds:
            family = sorted(seed.registry.mappers, key=lambda m: m.class_.__qualname__)
            for mapper in [seed, *family]:
                if mapper not in mappers:
                    mappers.append(mapper)
        result: dict[str, dict[str, str]] = {}
        for mapper in mappers:
            columns = _mapper_columns(mapper, lookup)
            if columns:
                result.setdefault(mapper.class_.__name__, columns)
        return result

    def _instance(
        self, state: InstanceState[Any], step: int, statements: list[int], returned: bool
    ) -> InstanceRecord:
        mapper = state.mapper
        attributes: dict[str, Any] = {}
        types: dict[str, str] = {}
        for prop in mapper.column_attrs:
            if prop.key in state.dict:
                value = state.dict[prop.key]
                attributes[prop.key] = _snapshot_value(value)
                types[prop.key] = type(value).__name__
        built_by = self._built_by.get(state)
        columns = _mapper_columns(mapper, self._lookups[built_by]) if built_by is not None else {}
        return InstanceRecord(
            class_name=mapper.class_.__name__,
            identity=tuple(state.identity) if state.identity is not None else (),
            attributes=attributes,
            attribute_types=types,
            columns=columns,
            statement=built_by,
            step=step,
            from_identity_map=returned and built_by is not None and built_by not in statements,
            returned=returned,
        )

    def start_step(self, index: int, label: str, code: str) -> OrmStepResult:
        """Begin step ``index``: statements from now on belong to it.

        Returns:
            Its result, to be filled by ``take_value`` and ``end_step``.
        """
        self.step = index
        self._step_loads = []
        self._first = len(self.statements)
        return OrmStepResult(index=index, label=label, code=code, started=time.time())

    def take_value(self, result: OrmStepResult, value: Any) -> list[InstanceState[Any]]:
        """Consume what the step returned (fetching a ``Result``), keep it and describe it.

        Sync code: it may run SQL (a ``Result`` still to fetch, a ``__repr__``
        that lazy-loads), so an asyncio run calls it inside ``run_sync``.

        Returns:
            The states of the ORM instances in the value, in order.

        Raises:
            Exception: whatever fetching or ``repr`` raised (a SQL error).
        """
        value = _consume(value)
        self._keep.append(value)
        returned: list[InstanceState[Any]] = []
        _flatten(value, returned)
        result.result_repr = _short_repr(value)
        return returned

    def end_step(self, result: OrmStepResult, returned: list[InstanceState[Any]]) -> OrmStepResult:
        """Finish a step: link its statements, snapshot its instances, explain silence.

        Args:
            result: from ``start_step``; ``error`` set if the step failed.
            returned: from ``take_value`` (empty when the step failed).

        Returns:
            ``result``, completed.
        """
        index = result.index
        result.statements = [s.index for s in self.statements[self._first :]]
        for statement in result.statements:
            self.statements[statement].attribute_columns = self._attribute_columns(statement)
        returned = list(returned)
        records = [self._instance(s, index, result.statements, True) for s in returned]
        seen = {id(s) for s in returned}  # (states, alive in `returned`: ids are unique)
        for state in self._step_loads:
            if id(state) not in seen:
                seen.add(id(state))
                returned.append(state)
                records.append(self._instance(state, index, result.statements, False))
        result.instances = records
        if not result.statements and result.error is None:
            result.note = _silent_note(result.code, records)
        result.ended = time.time()
        return result


def _silent_note(code: str, records: list[InstanceRecord]) -> str:
    """Why a step that ran no SQL needed none."""
    returned = [r for r in records if r.returned]
    if returned and all(r.from_identity_map for r in returned):
        match = re.match(r"[\s(]*(?:await\s+)?(session\.\w+)\(", code)
        who = match.group(1) if match else "the session"
        found = ", ".join(r.label for r in returned)
        return f"sent nothing: {who} found {found} in the identity map"
    if not returned:
        return "sent nothing: the step ran no SQL and returned no ORM instance"
    return "sent nothing: the step returned instances without running SQL"
