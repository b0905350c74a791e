"""Run ORM steps with SQLAlchemy's asyncio extension (asyncpg, psycopg's async mode).

The program runs as a FastAPI app runs it: ``create_async_engine`` with
``NullPool`` and one ``AsyncSession`` bound to one ``AsyncConnection``.
Recording is the same ``Recorder`` as for sync runs, listening on the async
engine's ``sync_engine`` (SQLAlchemy runs the sync engine inside greenlets,
so its events fire as usual). Steps with an async form are awaited with the
``AsyncSession``; steps with only a sync form run through
``AsyncSession.run_sync``, which hands them the ``Session`` inside.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncMappingResult,
    AsyncResult,
    AsyncScalarResult,
    AsyncSession,
    create_async_engine,
)
from sqlalchemy.orm import InstanceState, Mapper, Session
from sqlalchemy.pool import NullPool

from pgwire_inspect.errors import OrmRunError
from pgwire_inspect.orm._model import OrmRun, OrmStep, OrmStepResult
from pgwire_inspect.orm._recorder import Recorder, one_line, step_error
from pgwire_inspect.orm._runner import connect_error, engine_connect_args
from pgwire_inspect.orm._url import PreparedUrl

__all__ = ["async_engine", "run_coroutine", "run_orm_async"]

_T = TypeVar("_T")

# What closing a connection that already broke may raise (asyncpg lets
# socket errors through unwrapped).
_CLOSE_ERRORS = (SQLAlchemyError, OSError, asyncio.TimeoutError)


def run_coroutine(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, in a new event loop.

    ``asyncio.run`` in the calling thread, which works in any thread without
    a running loop (a fresh thread has none). When the calling thread runs a
    loop already (a notebook, an async app), the coroutine runs in a new
    worker thread instead, and the caller's thread waits for it.

    Args:
        make: creates the coroutine (called in the thread that runs it).

    Returns:
        What the coroutine returned.

    Raises:
        Exception: whatever the coroutine raised.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    if not running:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgwire-inspect-orm") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def async_engine(url: PreparedUrl, connect_timeout: float) -> AsyncEngine:
    """An ``AsyncEngine`` for ``url`` with ``NullPool`` and capturable connect arguments.

    Args:
        url: from ``prepare_url`` with driver asyncpg or psycopg
            (``postgresql+psycopg`` selects psycopg's async dialect here).
        connect_timeout: seconds to wait for a connection.

    Returns:
        The engine; dispose of it with ``await engine.dispose()``.

    Raises:
        OrmRunError: the driver (or greenlet, which the asyncio extension
            needs) is not installed.
    """
    try:
        return create_async_engine(
            url.url, poolclass=NullPool, connect_args=engine_connect_args(url, connect_timeout)
        )
    except ImportError as exc:
        raise OrmRunError(
            f"driver {url.driver} cannot be used with asyncio: {one_line(exc)}"
        ) from None


async def _fetch(value: Any) -> Any:
    """Fetch an ``AsyncResult`` (from ``session.stream(...)``) into a list; else as is."""
    if isinstance(value, (AsyncResult, AsyncScalarResult, AsyncMappingResult)):
        return await value.all()
    return value


async def _run_step(
    recorder: Recorder, index: int, step: OrmStep, session: AsyncSession
) -> OrmStepResult:
    label, code = step.shown(True)
    result = recorder.start_step(index, label, code)
    returned: list[InstanceState[Any]] = []

    def take(_session: Session, value: Any) -> list[InstanceState[Any]]:
        return recorder.take_value(result, value)

    try:
        if step.arun is not None:
            value = await step.arun(session)
        else:
            assert step.run is not None  # OrmStep has one form at least
            value = await session.run_sync(step.run)
        returned = await session.run_sync(take, await _fetch(value))
    except Exception as exc:
        result.error = step_error(exc)
        returned = []
    return recorder.end_step(result, returned)


async def _run(
    url: PreparedUrl,
    program: Sequence[OrmStep],
    on_connect: Callable[[int], None] | None,
    connect_timeout: float,
) -> OrmRun:
    run = OrmRun(driver=url.driver, masked_url=url.masked, started=time.time(), asyncio=True)
    engine = async_engine(url, connect_timeout)
    recorder = Recorder(engine.sync_engine, statement_is_wire=url.driver == "asyncpg")
    event.listen(Mapper, "load", recorder.on_load)
    try:
        try:
            connection = await engine.connect()
        except Exception as exc:  # asyncpg raises socket errors and its own unwrapped
            raise OrmRunError(connect_error(url, exc)) from None
        try:
            if recorder.client_port is None:
                raise OrmRunError("cannot read the local TCP port of the connection")
            if on_connect is not None:
                on_connect(recorder.client_port)
            session = AsyncSession(bind=connection)
            recorder.session = session.sync_session
            try:
                for index, step in enumerate(program):
                    result = await _run_step(recorder, index, step, session)
                    run.steps.append(result)
                    if result.error is not None:
                        break
            finally:
                with contextlib.suppress(*_CLOSE_ERRORS):
                    await session.close()
        finally:
            with contextlib.suppress(*_CLOSE_ERRORS):
                await connection.close()
    finally:
        event.remove(Mapper, "load", recorder.on_load)
        await engine.dispose()
        run.ended = time.time()
    run.client_port = recorder.client_port
    run.server_version = recorder.server_version
    run.statements = recorder.statements
    run.setup_statements = recorder.setup_statements
    return run


def run_orm_async(
    url: PreparedUrl,
    program: Sequence[OrmStep],
    *,
    on_connect: Callable[[int], None] | None = None,
    connect_timeout: float = 10,
) -> OrmRun:
    """``run_orm`` on SQLAlchemy's asyncio extension; see ``run_orm``.

    Args:
        url: from ``prepare_url``, driver asyncpg or psycopg.
        program: the steps.
        on_connect: called with the connection's local TCP port before the
            first step (from the thread running the event loop).
        connect_timeout: seconds to wait for the connection.

    Returns:
        The ``OrmRun``, with ``asyncio=True``.

    Raises:
        OrmRunError: the connection cannot be made (one line).
    """
    return run_coroutine(lambda: _run(url, program, on_connect, connect_timeout))
