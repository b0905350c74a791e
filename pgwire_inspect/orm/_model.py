"""The records an ORM run produces: statements, instances, step results.

Plain dataclasses with no behaviour beyond a few derived properties, so the
renderers and the JSON-lines writer can read them without importing
SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgwire_inspect.errors import OrmRunError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = [
    "InstanceRecord",
    "OrmRun",
    "OrmStep",
    "OrmStepResult",
    "RecordedStatement",
]


@dataclass(frozen=True)
class OrmStep:
    """One step of an ORM program: a piece of code run with the shared session.

    A step has a sync form (``run``, called with a ``Session``), an async form
    (``arun``, awaited with an ``AsyncSession``), or both. ``run_orm`` uses the
    sync form with a sync engine, and the async form when the program runs on
    SQLAlchemy's asyncio extension; there a step without an async form runs
    its sync form through ``await session.run_sync(run)``.

    Attributes:
        label: a short name for the step, shown as its heading.
        code: the Python source of the step as the user should read it
            (``session.get(User, 1)``); for a step with only an async form,
            the async source.
        run: the sync form: called with the run's ``Session``; its return
            value (an instance, a list, a ``Result`` ...) is what the step
            "returned". None for a step with only an async form.
        arun: the async form: called with the run's ``AsyncSession``, returns
            an awaitable whose result is what the step returned; None for a
            sync-only step.
        async_code: the source of the async form
            (``await session.get(User, 1)``); None: ``code``.
        async_label: the label of the async form when it differs; None: ``label``.

    Raises:
        OrmRunError: (on construction) neither ``run`` nor ``arun`` is given.
    """

    label: str
    code: str
    run: Callable[[Session], Any] | None = None
    arun: Callable[[AsyncSession], Awaitable[Any]] | None = None
    async_code: str | None = None
    async_label: str | None = None

    def __post_init__(self) -> None:
        if self.run is None and self.arun is None:
            raise OrmRunError(f"step {self.label!r} has neither a sync nor an async form")

    @property
    def async_only(self) -> bool:
        """True when the step has no sync form: it needs the asyncio extension."""
        return self.run is None

    def shown(self, asyncio: bool) -> tuple[str, str]:
        """The ``(label, code)`` to show for a run in sync or asyncio mode.

        Args:
            asyncio: True when the program runs on SQLAlchemy's asyncio extension.

        Returns:
            The async label and code when running with the async form, else
            ``(label, code)`` (a sync form run through ``run_sync`` shows its
            own code: it is what receives the sync ``Session``).
        """
        if asyncio and self.arun is not None:
            return self.async_label or self.label, self.async_code or self.code
        return self.label, self.code


@dataclass
class RecordedStatement:
    """One statement the DBAPI cursor executed, as seen by SQLAlchemy's events.

    Attributes:
        index: position in ``OrmRun.statements`` (0-based, execution order).
        step: index of the ``OrmStep`` that caused it.
        statement: the SQL text SQLAlchemy handed to ``cursor.execute`` (with
            the driver's placeholders, ``%(username_1)s`` for psycopg2).
        parameters: the parameters handed to ``cursor.execute`` (a dict, a
            tuple, or a list of them for ``executemany``), as given.
        wire_sql: the SQL text the driver put on the wire, or None when the
            driver does not tell. psycopg2: ``cursor.query`` (parameters
            interpolated client side), exactly the text of the Query message.
            psycopg 3: the query of its Parse message (``$1`` placeholders;
            the values travel in Bind). asyncpg: the statement itself, which
            is exactly the query of its Parse message (SQLAlchemy's asyncpg
            dialect already writes ``$1::VARCHAR`` placeholders; the values,
            ``parameters`` as a tuple, travel in Bind).
        result_columns: the column names of the result (``cursor.description``),
            in order; empty for statements that return no rows.
        attribute_columns: mapped class name -> {attribute key -> result column
            name}, for every mapped class whose column attributes this result
            carries (``session.query(User)`` gives ``users_id``,
            ``users_username`` ...; ``select(User)`` gives ``id``,
            ``username`` ...). Filled in when the step ends. When one class
            appears twice in a result (a self-join), its first columns win.
        rowcount: the DBAPI ``cursor.rowcount`` after execution (-1 when unknown).
        started: when ``cursor.execute`` was called, seconds since the epoch.
        ended: when it returned or raised, seconds since the epoch (None if it
            never did).
        error: the DBAPI error message (first line) if the statement failed.
    """

    index: int
    step: int
    statement: str
    parameters: Any
    wire_sql: str | None = None
    result_columns: list[str] = field(default_factory=list)
    attribute_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    rowcount: int = -1
    started: float = 0.0
    ended: float | None = None
    error: str | None = None


@dataclass
class InstanceRecord:
    """An ORM instance a step returned or loaded, with its values at the step's end.

    Attributes:
        class_name: the mapped class name (``"User"``).
        identity: the primary key values (``(1,)``); ``()`` for an instance the
            session has not persisted.
        attributes: every loaded mapped column attribute key -> its Python
            value, read from the instance's state dict (never triggering a
            lazy load: deferred or expired attributes are left out), copied
            when the step ended.
        attribute_types: attribute key -> the Python type name of the value
            (``"int"``, ``"str"``, ``"NoneType"``).
        columns: attribute key -> result column name in the statement that
            built the instance (``statement``). To find the row of a later
            statement that selected the same instance again, use that
            statement's ``attribute_columns`` and ``identity``.
        statement: index of the ``RecordedStatement`` whose rows built the
            instance (its first load), or None if no recorded statement did.
        step: index of the step this record belongs to.
        from_identity_map: True when the step returned the instance but an
            earlier step's statement built it (SQLAlchemy's identity map handed
            back the existing object).
        returned: True when the step returned the instance, False when it was
            only loaded during the step (by a relationship load, say).
    """

    class_name: str
    identity: tuple[Any, ...]
    attributes: dict[str, Any]
    attribute_types: dict[str, str]
    columns: dict[str, str]
    statement: int | None
    step: int
    from_identity_map: bool = False
    returned: bool = True

    @property
    def label(self) -> str:
        """``User(1)``: the class name and the identity, for headings and notes."""
        return f"{self.class_name}({', '.join(repr(v) for v in self.identity)})"


@dataclass
class OrmStepResult:
    """What one ``OrmStep`` did.

    Attributes:
        index: position of the step in the program.
        label: the step's label.
        code: the step's code text.
        statements: indexes of the ``RecordedStatement`` objects the step
            caused, in order; empty when it sent nothing.
        instances: the instances it returned (in order, ``returned=True``)
            followed by those loaded during the step but not returned.
        result_repr: ``repr`` of what the step returned (a ``Result`` is
            consumed into a list first), at most about 1,000 characters;
            empty when the step failed.
        error: one line saying why the step failed (the DBAPI's message for
            SQL errors), or None.
        note: why a step sent nothing (``"sent nothing: session.get found
            User(1) in the identity map"``), or None.
        started: seconds since the epoch when the step began.
        ended: seconds since the epoch when it ended.
    """

    index: int
    label: str
    code: str
    statements: list[int] = field(default_factory=list)
    instances: list[InstanceRecord] = field(default_factory=list)
    result_repr: str = ""
    error: str | None = None
    note: str | None = None
    started: float = 0.0
    ended: float = 0.0


@dataclass
class OrmRun:
    """Everything one ``run_orm`` call recorded.

    Attributes:
        driver: the DBAPI driver used (``"psycopg2"``, ``"psycopg"`` or ``"asyncpg"``).
        masked_url: the URL connected to, password shown as ``***``.
        client_port: the local (client side) TCP port of the connection.
        server_version: the ``server_version`` the server reported in its
            ParameterStatus message (``"15.4 (Debian 15.4-1)"``), or None.
        statements: every statement executed through the cursor events, in order.
        steps: one result per step that ran; the run stops after a failed step.
        setup_statements: the SQL texts SQLAlchemy's dialect ran while
            initialising the connection that passed through its
            ``do_execute`` hook (``select pg_catalog.version()`` ...). Other
            set-up traffic (see the package docstring) is not recorded.
        started: seconds since the epoch when the connection was requested.
        ended: seconds since the epoch when it was closed.
        asyncio: True when the program ran on SQLAlchemy's asyncio extension
            (``create_async_engine``, ``AsyncSession``): always for asyncpg,
            for psycopg when a step had only an async form.
    """

    driver: str
    masked_url: str
    client_port: int | None = None
    server_version: str | None = None
    statements: list[RecordedStatement] = field(default_factory=list)
    steps: list[OrmStepResult] = field(default_factory=list)
    setup_statements: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    asyncio: bool = False

    @property
    def error(self) -> str | None:
        """The error of the step that stopped the run, or None if all steps ran."""
        for step in self.steps:
            if step.error is not None:
                return step.error
        return None
