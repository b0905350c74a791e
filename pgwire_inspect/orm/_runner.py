"""Run ORM steps on one fresh connection and record what they did.

``run_orm`` runs a program with a sync engine and ``Session`` (psycopg2,
psycopg), or hands it to the asyncio runner (``_async_runner``) for asyncpg
and for psycopg programs with async-only steps. Recording is the
``Recorder``'s job (``_recorder``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.pool import NullPool

from pgwire_inspect.errors import OrmRunError
from pgwire_inspect.orm._model import OrmRun, OrmStep, OrmStepResult
from pgwire_inspect.orm._recorder import Recorder, one_line, step_error
from pgwire_inspect.orm._url import ASYNC_DRIVERS, ASYNC_ONLY_DRIVERS, DRIVERS, PreparedUrl

__all__ = ["connect_args", "connect_error", "engine_connect_args", "run_orm", "uses_asyncio"]


def connect_args(connect_timeout: float) -> dict[str, Any]:
    """libpq ``connect()`` keyword arguments for a capturable connection.

    Args:
        connect_timeout: seconds; the drivers take whole seconds (rounded up
            here, at least 1); psycopg 3 waits at least 2.

    Returns:
        ``{"connect_timeout": int, "sslmode": "disable", "gssencmode": "disable"}``
        (libpq parameter key words, PostgreSQL docs "Connection Strings").
    """
    return {
        "connect_timeout": max(1, math.ceil(connect_timeout)),
        "sslmode": "disable",
        "gssencmode": "disable",
    }


def engine_connect_args(url: PreparedUrl, connect_timeout: float) -> dict[str, Any]:
    """The ``connect_args`` of an engine for ``url``'s driver.

    Args:
        url: from ``prepare_url``.
        connect_timeout: seconds to wait for the connection.

    Returns:
        For psycopg2 and psycopg, ``connect_args(connect_timeout)``; for
        asyncpg, ``{"timeout": connect_timeout}`` (seconds, a float: asyncpg's
        ``connect()`` keyword) with ``url.connect_args`` (``ssl=False`` ...).
    """
    if url.driver == "asyncpg":
        return {"timeout": float(connect_timeout), **url.connect_args}
    return {**connect_args(connect_timeout), **url.connect_args}


def connect_error(url: PreparedUrl, exc: BaseException) -> str:
    """One line saying why a connection attempt failed.

    libpq's messages (``connection to server at "127.0.0.1", port 5433 failed:
    Connection refused`` plus a hint line) are cut to their reason. asyncpg
    lets socket errors through unwrapped; they get libpq's wording
    (``connection refused``, ``timeout expired``, ``could not translate host
    name ...``).

    Args:
        url: the URL that was tried (for host and port).
        exc: the exception SQLAlchemy raised (its ``orig`` is the DBAPI's),
            or the driver's own (an ``OSError`` from asyncpg).

    Returns:
        ``"cannot connect to 127.0.0.1:5433: connection refused"``.
    """
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(orig, (TimeoutError, asyncio.TimeoutError)):
        reason = "timeout expired"
    elif isinstance(orig, socket.gaierror):
        reason = f'could not translate host name "{url.host}" to address: {orig.strerror}'
    elif isinstance(orig, OSError) and orig.strerror:
        reason = orig.strerror
    else:
        reason = one_line(orig)
        if "failed: " in reason:
            reason = reason.rsplit("failed: ", 1)[1]
        reason = re.sub(r"^(FATAL|ERROR):\s+", "", reason).strip()
    if reason[:1].isupper() and reason[1:2].islower():
        reason = reason[0].lower() + reason[1:]
    return f"cannot connect to {url.host}:{url.port}: {reason}"


def uses_asyncio(url: PreparedUrl, program: Sequence[OrmStep]) -> bool:
    """Whether ``run_orm`` runs ``program`` on SQLAlchemy's asyncio extension.

    Args:
        url: from ``prepare_url``.
        program: the steps.

    Returns:
        True for asyncpg, and for psycopg when a step has only an async form.

    Raises:
        OrmRunError: a step has only an async form and the driver has no
            asyncio mode (psycopg2).
    """
    async_only = [step for step in program if step.async_only]
    if async_only and url.driver not in ASYNC_DRIVERS:
        raise OrmRunError(
            f"step {async_only[0].label!r} is async and driver {url.driver} has no asyncio "
            f"mode: use {' or '.join(ASYNC_DRIVERS)}"
        )
    return url.driver in ASYNC_ONLY_DRIVERS or bool(async_only)


def _run_step(recorder: Recorder, index: int, step: OrmStep, session: Session) -> OrmStepResult:
    label, code = step.shown(False)
    result = recorder.start_step(index, label, code)
    returned: list[InstanceState[Any]] = []
    try:
        assert step.run is not None  # uses_asyncio() sent async-only programs elsewhere
        returned = recorder.take_value(result, step.run(session))
    except Exception as exc:
        result.error = step_error(exc)
        returned = []
    return recorder.end_step(result, returned)


def run_orm(
    url: PreparedUrl,
    program: Sequence[OrmStep],
    *,
    on_connect: Callable[[int], None] | None = None,
    connect_timeout: float = 10,
) -> OrmRun:
    """Run ORM steps in one session on one fresh TCP connection, recording everything.

    The engine uses ``NullPool``: the one DBAPI connection is opened
    explicitly before the first step and closed at the end (the client sends
    Terminate and the TCP connection ends with FIN). Steps run in order in
    one session bound to that connection; the session is closed (its
    transaction rolled back unless a step committed) after the last step or
    after the first step that fails. Every value a step returns and every
    instance loaded is kept referenced until the run ends, so later steps find
    earlier instances in the identity map (which holds them weakly), as a
    script keeping them in variables would.

    With asyncpg, and with psycopg when a step has only an async form (an
    ``async def`` callable), the program runs on SQLAlchemy's asyncio
    extension as a FastAPI app does: ``create_async_engine`` (NullPool) and
    an ``AsyncSession``; steps with an async form are awaited with it, the
    others run through ``await session.run_sync(step.run)``. That run gets its
    own event loop (``asyncio.run``), in a worker thread when the calling
    thread already runs one; ``on_connect`` is then called from that thread.

    Args:
        url: from ``prepare_url`` (TCP, plaintext).
        program: the steps, e.g. ``demo_program()`` or ``callable_program(...)``.
        on_connect: called once with the connection's local TCP port as soon
            as the connection is open and SQLAlchemy's dialect has initialised
            it, before the first step runs. Exceptions it raises propagate
            (after the connection is closed).
        connect_timeout: seconds to wait for the connection; psycopg2 and
            psycopg round up to whole seconds (psycopg 3 waits at least 2),
            asyncpg takes it as is.

    Returns:
        The ``OrmRun``: recorded statements, step results with instances,
        client port, server version. A step that fails (SQL error or an
        exception in user code) has its ``error`` set and ends the run; it is
        not raised.

    Raises:
        OrmRunError: unsupported driver, async steps with psycopg2, or the
            connection cannot be made (refused, timed out, authentication
            failed), in one line: ``cannot connect to 127.0.0.1:5433:
            connection refused``.
    """
    if url.driver not in DRIVERS:
        raise OrmRunError(f"driver {url.driver} is not supported yet")
    program = list(program)
    if uses_asyncio(url, program):
        # Imported here: the asyncio extension needs greenlet, loaded only when used.
        from pgwire_inspect.orm._async_runner import run_orm_async

        return run_orm_async(url, program, on_connect=on_connect, connect_timeout=connect_timeout)
    run = OrmRun(driver=url.driver, masked_url=url.masked, started=time.time())
    engine = create_engine(
        url.url, poolclass=NullPool, connect_args=engine_connect_args(url, connect_timeout)
    )
    recorder = Recorder(engine)
    event.listen(Mapper, "load", recorder.on_load)
    try:
        try:
            connection = engine.connect()
        except SQLAlchemyError as exc:
            raise OrmRunError(connect_error(url, exc)) from None
        try:
            if recorder.client_port is None:
                raise OrmRunError("cannot read the local TCP port of the connection")
            if on_connect is not None:
                on_connect(recorder.client_port)
            session = Session(bind=connection)
            recorder.session = session
            try:
                for index, step in enumerate(program):
                    result = _run_step(recorder, index, step, session)
                    run.steps.append(result)
                    if result.error is not None:
                        break
            finally:
                with contextlib.suppress(SQLAlchemyError):
                    session.close()
        finally:
            with contextlib.suppress(SQLAlchemyError):
                connection.close()
    finally:
        event.remove(Mapper, "load", recorder.on_load)
        engine.dispose()
        run.ended = time.time()
    run.client_port = recorder.client_port
    run.server_version = recorder.server_version
    run.statements = recorder.statements
    run.setup_statements = recorder.setup_statements
    return run
