"""Load a user's query function from a ``module:function`` spec.

The spec works like uvicorn's ``module:app``: the module is imported with
the current directory on ``sys.path``, then the dotted attribute path after
the colon is looked up in it.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from pgwire_inspect.errors import OrmRunError
from pgwire_inspect.orm._model import OrmStep

__all__ = ["callable_program", "is_async_callable", "load_callable"]

_FORM = "module:function (e.g. myapp.queries:load_users)"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``module:function`` (or ``module:obj.attr``) and return the callable.

    The current working directory is put first on ``sys.path`` (and left
    there) so a module next to the user's shell imports, as with
    ``uvicorn module:app``.

    Args:
        spec: ``"package.module:function"`` or ``"package.module:obj.attr"``.

    Returns:
        The object the spec names; it is callable.

    Raises:
        OrmRunError: a spec without ``:``, a module that does not import, a
            missing attribute, or an object that is not callable. The message
            is one line, e.g. ``cannot import module 'myapp.queries': No
            module named 'myapp'``.
    """
    module_name, sep, attr_path = spec.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not sep or not module_name or not attr_path:
        raise OrmRunError(f"invalid callable {spec!r}: expected the form {_FORM}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OrmRunError(f"cannot import module {module_name!r}: {_one_line(exc)}") from exc
    except Exception as exc:  # the module's own code failed while importing
        raise OrmRunError(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise OrmRunError(f"module {module_name!r} has no attribute {attr_path!r}") from exc
    if not callable(obj):
        raise OrmRunError(f"{spec!r} is not callable")
    return obj


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (``async def``, or an object with one).

    Args:
        fn: any callable (a function, a bound method, a ``functools.partial``,
            an object with ``__call__``).

    Returns:
        True for coroutine functions and objects whose ``__call__`` is one.
    """
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def callable_program(fn: Callable[..., Any], spec: str) -> list[OrmStep]:
    """A program of one step: ``fn(session)``, or ``await fn(session)`` for ``async def``.

    A plain function is the step's sync form: it gets a ``Session`` (under
    asyncpg it runs through ``await session.run_sync(fn)``). A coroutine
    function is the step's async form: it gets an ``AsyncSession``, so the
    program needs an async driver (asyncpg, or psycopg in its async mode).

    Args:
        fn: the user's function; it is called with the run's session as its
            only argument and may return instances, rows or a ``Result``
            (an ``AsyncResult`` too, for an async function).
        spec: the ``module:function`` spec it was loaded from: the step's
            label; its code reads ``function(session)`` or
            ``await function(session)``.

    Returns:
        A list with one ``OrmStep``.
    """
    name = spec.partition(":")[2].strip() or spec
    if is_async_callable(fn):
        return [OrmStep(label=spec, code=f"await {name}(session)", arun=fn)]
    return [OrmStep(label=spec, code=f"{name}(session)", run=fn)]
