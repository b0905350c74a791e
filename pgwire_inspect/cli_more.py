"""The `replay` command, and where `demo` finds a server when none is named.

`register` adds ``replay`` to the Click group. `run_demo` is the body of
``demo``: it finds a server with `resolve_demo_target` (the DSN given, the
environment, 127.0.0.1:5432, a throwaway cluster from the installed
binaries, or, as a last resort, a replay of the capture shipped in
``pgwire_inspect/data/``) and runs the demo against it.

This module imports `pgwire_inspect.cli` only inside functions, so `cli.py`
may import it at any point.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click

from .errors import PgWireError

if TYPE_CHECKING:
    from .cli_common import Ctx
    from .replay import ReplayServer
    from .throwaway import ThrowawayCluster

__all__ = [
    "DEFAULT_PROBE",
    "DEMO_CAPTURE",
    "DemoTarget",
    "dsn_given_by_user",
    "libpq_environment_dsn",
    "register",
    "replay_and_show",
    "resolve_demo_target",
    "run_demo",
]

#: Where `demo` looks for a server when it is given none: (host, TCP port).
DEFAULT_PROBE: tuple[str, int] = ("127.0.0.1", 5432)
#: The capture `demo` replays when there is neither a server nor binaries
#: (package data: the ORM demo recorded with psycopg2).
DEMO_CAPTURE = "demo-psycopg2.pcap"
_LIBPQ_VARS = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD")


@dataclass
class DemoTarget:
    """Where the demo runs.

    Attributes:
        kind: "given" (--dsn), "environment" (DATABASE_URL or the libpq
            variables), "local" (a server answered at `DEFAULT_PROBE`),
            "throwaway" (a temporary cluster started for the demo) or
            "replay" (no database: a recorded session is replayed).
        dsn: the server's DSN (None for "replay").
        notices: one-line remarks for the user (why this target was chosen).
        capture: the capture to replay (kind "replay").
        cluster: the throwaway cluster (kind "throwaway"); `close` removes it.
    """

    kind: str
    dsn: str | None
    notices: list[str] = field(default_factory=list)
    capture: Path | None = None
    cluster: ThrowawayCluster | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def close(self) -> None:
        """Stop and remove the throwaway cluster, release the capture file. Idempotent."""
        try:
            if self.cluster is not None:
                self.cluster.stop()
        finally:
            self._stack.close()

    def __enter__(self) -> DemoTarget:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def libpq_environment_dsn(environ: Mapping[str, str]) -> str | None:
    """A DSN from the libpq environment variables, if any of them is set.

    Missing parts take the demo's defaults: host 127.0.0.1, port 5432, user
    postgres, and the user name as the database (as libpq does). PostgreSQL
    docs, "libpq - Environment Variables".

    Args:
        environ: the environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD).

    Returns:
        ``postgresql://user:password@host:port/database``, or None when none is set.

    Raises:
        PgWireError: PGPORT is not a port number.
    """
    if not any(environ.get(v) for v in _LIBPQ_VARS):
        return None
    from sqlalchemy.engine import URL

    port_text = environ.get("PGPORT") or "5432"
    if not port_text.isdigit():
        raise PgWireError(f"PGPORT is not a port number: {port_text!r}")
    user = environ.get("PGUSER") or "postgres"
    url = URL.create("postgresql", username=user, password=environ.get("PGPASSWORD") or None,
                     host=environ.get("PGHOST") or DEFAULT_PROBE[0], port=int(port_text),
                     database=environ.get("PGDATABASE") or user)
    return url.render_as_string(hide_password=False)


def _probe(host: str, port: int, timeout: float) -> str | None:
    """Why no usable server is at host:port (None: one is, and postgres can log in)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (
            "timeout expired" if isinstance(exc, TimeoutError) else exc.strerror or str(exc))
        return f"no PostgreSQL server answered at {host}:{port} ({reason})"
    import psycopg

    try:
        psycopg.connect(f"postgresql://postgres@{host}:{port}/postgres",
                        connect_timeout=max(2, math.ceil(timeout)), sslmode="disable",
                        gssencmode="disable").close()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()
        return (f"the server at {host}:{port} refused the login as postgres "
                f"({first[0] if first else type(exc).__name__})")
    return None


def _demo_capture(stack: contextlib.ExitStack) -> Path:
    ref = resources.files("pgwire_inspect").joinpath("data", DEMO_CAPTURE)
    return stack.enter_context(resources.as_file(ref))


def resolve_demo_target(dsn_given: str | None, *, environ: Mapping[str, str] | None = None,
                        probe: tuple[str, int] | None = None, probe_timeout: float = 1.0,
                        bin_dirs: Sequence[str | os.PathLike[str]] | None = None) -> DemoTarget:
    """Decide where the demo runs, starting a throwaway cluster if need be.

    In order: ``dsn_given``; DATABASE_URL; the libpq variables (PGHOST, PGPORT,
    PGUSER, PGDATABASE, PGPASSWORD); a server at ``probe`` that accepts a
    login as postgres (a TCP connect with ``probe_timeout``, then a real
    login); a throwaway cluster from the PostgreSQL binaries found in
    ``bin_dirs``; a replay of the ORM demo recorded with psycopg2, shipped
    as package data.

    Args:
        dsn_given: the DSN the user named, or None.
        environ: the environment (default ``os.environ``).
        probe: (host, port) to try (default `DEFAULT_PROBE`, 127.0.0.1:5432).
        probe_timeout: seconds for the TCP connect (the login gets at least 2).
        bin_dirs: directories to look for initdb and pg_ctl in (default: see
            `pgwire_inspect.throwaway.postgres_bin_dirs`; empty: none).

    Returns:
        The `DemoTarget`; use it as a context manager so that a throwaway
        cluster is stopped and removed afterwards.

    Raises:
        PgWireError: PGPORT is not a number.
    """
    from .throwaway import ThrowawayCluster, find_postgres_bin

    env = os.environ if environ is None else environ
    if dsn_given:
        return DemoTarget("given", dsn_given)
    if env.get("DATABASE_URL"):
        return DemoTarget("environment", env["DATABASE_URL"],
                          ["using the server of DATABASE_URL"])
    from_libpq = libpq_environment_dsn(env)
    if from_libpq is not None:
        names = ", ".join(v for v in _LIBPQ_VARS if env.get(v))
        return DemoTarget("environment", from_libpq, [f"using the server of {names}"])
    host, port = probe or DEFAULT_PROBE
    why = _probe(host, port, probe_timeout)
    if why is None:
        return DemoTarget("local", f"postgresql://postgres@{host}:{port}/postgres")
    bindir = find_postgres_bin(bin_dirs)
    failed = ""
    if bindir is not None:
        cluster = ThrowawayCluster(bindir)
        try:
            cluster.start()
        except PgWireError as exc:
            failed = f"; a throwaway PostgreSQL from {bindir} could not start ({exc})"
        else:
            try:
                version = cluster.version
            except BaseException:
                cluster.stop()
                raise
            return DemoTarget("throwaway", cluster.dsn, [
                f"{why}: started a throwaway PostgreSQL {version} from {bindir} on "
                f"127.0.0.1:{cluster.port} (removed when the demo ends); --dsn or DATABASE_URL "
                "points the demo at your server"], cluster=cluster)
    target = DemoTarget("replay", None)
    try:
        target.capture = _demo_capture(target._stack)
    except BaseException:
        target.close()
        raise
    if failed:
        what = f"{why}{failed}"
    elif why.startswith("no PostgreSQL server"):
        what = "no PostgreSQL server or binaries found"
    else:
        what = f"{why}, and no PostgreSQL binaries found"
    target.notices.append(
        f"{what}: this is a REPLAY of a recorded session (the ORM demo recorded with psycopg2, "
        "answered byte for byte from the capture shipped with pgwire-inspect); point the demo "
        "at a real server with --dsn or DATABASE_URL")
    return target


def dsn_given_by_user(param: str, value: str | None) -> str | None:
    """``value`` unless the option ``param`` of the running command took its default.

    Args:
        param: the option's parameter name ("dsn").
        value: its value.

    Returns:
        ``value`` when it came from the command line or the environment
        (DATABASE_URL), None when it is the option's default.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source(param) in (
            click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP):
        return None
    return value


def _note(ctx: Ctx, text: str, style: str = "yellow") -> None:
    ctx.err.print(f"[{style}]note:[/] ", end="")
    ctx.err.print(text, markup=False, highlight=False)


def run_demo(ctx: Ctx, dsn_given: str | None, *,
             probe: tuple[str, int] | None = None,
             bin_dirs: Sequence[str | os.PathLike[str]] | None = None, **options: Any) -> None:
    """The `demo` command: find a server (`resolve_demo_target`), run the demo, show it.

    Args:
        ctx: the command's `Ctx`.
        dsn_given: the DSN the user named (see `dsn_given_by_user`), or None.
        probe, bin_dirs: see `resolve_demo_target` (defaults for the command line).
        **options: the demo's options, as ``cli._run_and_show`` takes them
            (driver, fmt, show_all, rows, write_pcap, redact, iface,
            capture_method, connect_timeout, show_secrets, redact_columns).

    Raises:
        PgWireError: from the run (printed by the command's error handling).
        SystemExit: 130 when interrupted, 1 when a replay diverged.
    """
    from .cli import _run_and_show
    from .orm import demo_program

    with resolve_demo_target(dsn_given, probe=probe, bin_dirs=bin_dirs) as target:
        for notice in target.notices:
            _note(ctx, notice, "bold yellow" if target.kind == "replay" else "yellow")
        if target.capture is not None:
            driver = options.get("driver", "psycopg2")
            if driver != "psycopg2":
                _note(ctx, f"the recorded session used psycopg2; --driver {driver} needs a "
                           "real server, replaying with psycopg2")
            shared = ("fmt", "show_all", "rows", "write_pcap", "redact", "show_secrets",
                      "redact_columns", "connect_timeout")
            replay_and_show(ctx, target.capture, demo_program, driver="psycopg2",
                            **{k: v for k, v in options.items() if k in shared})
            if options.get("fmt", "table") == "table":
                _note(ctx, "this was a REPLAY: every byte above came from a recording, not from "
                           "a database", "bold yellow")
            return
        assert target.dsn is not None
        _run_and_show(ctx, demo_program, dsn=target.dsn, seed_demo=True, **options)


def _divergence_object(server: ReplayServer) -> list[dict[str, Any]]:
    return [{"type": "ReplayDivergence", "session": d.session, "request": d.request,
             "kind": d.kind, "sql": d.sql,
             "parameters": None if d.parameters is None else [
                 None if p is None else p.decode("utf-8", "replace") for p in d.parameters],
             "expected": d.expected.describe() if d.expected else None}
            for d in server.divergences]


def replay_and_show(ctx: Ctx, capture: str | os.PathLike[str], program_of: Callable[[], Any],
                    *, conn: int | None = None, driver: str | None = None, fmt: str = "table",
                    show_all: bool = False, rows: int = 10, write_pcap: str | None = None,
                    redact: bool = False, capture_method: str = "relay", show_secrets: bool = False,
                    redact_columns: tuple[str, ...] = (), connect_timeout: float = 10) -> None:
    """Run an ORM program against a `ReplayServer` of a capture and show the usual view.

    The program's connection is captured as in `demo` (``run_live``, through
    a relay or by sniffing loopback), so the view shows the replayed wire
    beside the instances SQLAlchemy built from it.

    Args:
        ctx: the command's `Ctx`.
        capture: the pcap, pcapng or hex dump file.
        program_of: returns the ORM steps (called after the capture is loaded).
        conn: the recorded connection to replay (None: the one with the most queries).
        driver: None guesses it from the recording (`guess_driver`).
        fmt, show_all, rows, write_pcap, redact, show_secrets, redact_columns: as for `demo`.
        capture_method: "relay" or "sniff" ("auto" means "relay").
        connect_timeout: seconds the ORM may take to connect.

    Raises:
        CaptureError: the capture cannot be read or has no such connection.
        PgWireError: the run diverged from the recording (after the report
            is printed), or a step failed.
        SystemExit: 130 when interrupted.
    """
    from .cli import EXIT_INTERRUPTED, apply_redaction, save_pcap
    from .linking import link_run
    from .live import run_live
    from .orm import prepare_url
    from .render.capture_view import render_capture
    from .render.jsonl import JsonLinesWriter
    from .render.orm_view import render_orm_run, write_instances
    from .replay import ReplayServer, guess_driver, load_recording

    apply_redaction(show_secrets, redact_columns)
    _, recorded = load_recording(capture, conn)
    guessed = guess_driver(recorded)
    chosen = driver or guessed
    program = program_of()
    with ReplayServer(recorded) as server:
        version = server.recording.server_version
        _note(ctx, f"replaying connection {recorded.id} of {os.fspath(capture)} "
                   f"({recorded.client_text} → {recorded.server_text}, {len(recorded.queries)} "
                   f"queries{', PostgreSQL ' + version if version else ''}, made by "
                   f"{guessed} by the look of it) from 127.0.0.1:{server.port} with {chosen}; "
                   "no database is involved", "cyan")
        url = prepare_url(server.dsn(), chosen)
        method = "relay" if capture_method == "auto" else capture_method
        result = run_live(url, program, capture=method, connect_timeout=connect_timeout)
    for notice in result.notices:
        _note(ctx, notice)
    if write_pcap:
        save_pcap(ctx, write_pcap, result.decoded, result.frames, redact)
    if result.run is None:
        render_capture(ctx.out, result.decoded, rows=rows)
        raise SystemExit(EXIT_INTERRUPTED)
    linked = link_run(result.run, result.connection)
    if fmt == "jsonl":
        writer = JsonLinesWriter(sys.stdout)
        if result.connection is not None:
            for wm in result.connection.messages:
                writer.message(wm, result.connection)
        write_instances(writer, linked)
        for obj in _divergence_object(server):
            writer.write(obj)
    else:
        render_orm_run(ctx.out, linked, rows=rows, show_all=show_all)
    if result.interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
    for mismatch in server.mismatches:
        _note(ctx, mismatch.describe())
    divergences = server.divergences
    if divergences:
        ctx.err.print(f"[bold red]replay diverged:[/] {len(divergences)} request(s) had no "
                      "answer in the recording (each got an ErrorResponse, SQLSTATE 08P01):")
        for d in divergences:
            ctx.err.print(f"  connection {d.session}: {d.describe()}", markup=False,
                          highlight=False)
        raise PgWireError(f"the run diverged from the recording: {len(divergences)} request(s) "
                          "without a recorded answer (listed above)")
    busiest = max(server.sessions, key=lambda s: len(s.used), default=None)
    unused = busiest.unused() if busiest is not None else []
    if unused:
        more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
        _note(ctx, f"the run did not send {len(unused)} recorded quer"
                   f"{'y' if len(unused) == 1 else 'ies'}: "
                   + "; ".join(q.describe() for q in unused[:3]) + more, "dim")
    failed = [s for s in result.run.steps if s.error]
    if failed:
        raise PgWireError(f"step {failed[0].index + 1} failed: {failed[0].error}")


def register(group: click.Group) -> None:
    """Add the ``replay`` command to ``group`` (the pgwire-inspect Click group).

    Args:
        group: the group; its callback must set a `Ctx` as the context object.
    """
    from .cli_common import guarded, redaction_options

    @click.command()
    @click.argument("capture", type=click.Path(dir_okay=False, exists=True))
    @click.option("--query", "function", metavar="MODULE:FUNCTION",
                  help="Your ORM function (it takes a Session), as for `query`.")
    @click.option("--demo", "use_demo", is_flag=True, help="Replay with the built-in demo program.")
    @click.option("--conn", type=int, default=None,
                  help="The recorded connection to replay, numbered as `read` shows them "
                       "(default: the one with the most queries).")
    @click.option("--driver", type=click.Choice(["psycopg2", "psycopg", "asyncpg"]),
                  default=None, help="The driver SQLAlchemy uses (default: guessed from the "
                                     "recording: simple Query psycopg2, binary results "
                                     "asyncpg, else psycopg).")
    @click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table",
                  show_default=True, help="Tables for people, JSON lines for scripts.")
    @click.option("--all", "show_all", is_flag=True,
                  help="Show the startup phase and SQLAlchemy's set-up queries in full.")
    @click.option("--rows", type=int, default=10, show_default=True,
                  help="DataRows shown per result.")
    @click.option("--write-pcap", type=click.Path(dir_okay=False),
                  help="Save the replayed connection as a pcap file.")
    @click.option("--redact", is_flag=True,
                  help="With --write-pcap: overwrite passwords, SASL data and --redact-columns "
                       "values in the file.")
    @click.option("--capture", "capture_method", type=click.Choice(["relay", "sniff"]),
                  default="relay", show_default=True,
                  help="relay: record through a TCP relay; sniff: a raw socket on loopback.")
    @redaction_options
    @click.pass_obj
    def replay(ctx: Ctx, capture: str, function: str | None, use_demo: bool, conn: int | None,
               driver: str | None, fmt: str, show_all: bool, rows: int, write_pcap: str | None,
               redact: bool, capture_method: str, show_secrets: bool,
               redact_columns: tuple[str, ...]) -> None:
        """Rebuild ORM instances from a saved capture, with no database.

        A server on a free loopback port answers your ORM function (or the
        demo) with the backend messages recorded in CAPTURE, byte for byte,
        and the usual side-by-side view shows the instances SQLAlchemy built
        from them. A query the recording has no answer for gets an error
        (SQLSTATE 08P01); the divergence is reported and the exit code is 1.

        \b
        Example:
          pgwire-inspect replay captures/orm-demo-psycopg2.pcap --demo
          pgwire-inspect replay session.pcap --query myapp.queries:load_users --conn 2
        """
        from .orm import callable_program, demo_program, load_callable

        if bool(function) == use_demo:
            raise click.UsageError("give either --query MODULE:FUNCTION or --demo")

        def program() -> Any:
            if use_demo:
                return demo_program()
            assert function is not None
            return callable_program(load_callable(function), function)

        guarded(replay_and_show)(ctx, capture, program, conn=conn, driver=driver, fmt=fmt,
                                 show_all=show_all, rows=rows, write_pcap=write_pcap,
                                 redact=redact, capture_method=capture_method,
                                 show_secrets=show_secrets, redact_columns=redact_columns)

    group.add_command(replay)
