"""Run one fuzz target for a number of inputs or seconds, and report what broke.

Usage (from the repository root)::

    .venv/bin/python fuzz/run.py --target parser --inputs 1000000
    .venv/bin/python fuzz/run.py --target capture --seconds 600 --engine builtin
    .venv/bin/python fuzz/run.py --target parser --replay fuzz/crashes/parser-*.bin
    .venv/bin/python fuzz/run.py --target parser --minimize fuzz/crashes/parser-ab12.bin

Engines: ``atheris`` (coverage-guided libFuzzer, used when it is installed:
``.venv/bin/pip install atheris``) seeded with a corpus written from the
real captures into ``fuzz/corpus/TARGET/``; ``builtin``, a mutation loop of
its own (``fuzz/generate.py``) that needs nothing but the project.

Every input runs under a time limit (a hang is a finding) and the process
under an address-space limit (an allocation by a claimed length shows as
MemoryError). Each distinct failure is saved, smallest input first, as
``fuzz/crashes/TARGET-SIGNATURE.bin`` with the traceback beside it
(``.txt``). At the end it prints inputs run, inputs per second and the
failures found; the exit status is 1 when there were any.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
FUZZ = ROOT / "fuzz"
TARGET_NAMES = ("parser", "chunking", "capture", "frame", "pipeline", "hexdump")


def signature(exc: BaseException) -> str:
    """A short name for a failure: what was raised where (numbers left out of messages)."""
    kind = type(exc).__name__
    if kind in ("InvariantError", "Hang"):
        return f"{kind}: {re.sub(r'[0-9]+', 'N', str(exc))[:120]}"
    frames = [fs for fs in traceback.extract_tb(exc.__traceback__)
              if "pgwire_inspect" in fs.filename or "scapy" in fs.filename]
    if not frames:
        return f"{kind} at harness"
    if isinstance(exc, RecursionError):
        # Name the recursion by the call that repeats most, not where it overflowed.
        counts: dict[str, int] = {}
        for fs in frames:
            key = f"{Path(fs.filename).name}:{fs.name}"
            counts[key] = counts.get(key, 0) + 1
        return f"{kind} in {max(counts, key=lambda k: counts[k])}"
    fs = frames[-1]
    return f"{kind} at {Path(fs.filename).name}:{fs.name}:{fs.lineno}"


class Findings:
    """Failures seen in one run, each kept with its smallest input.

    Args:
        target: the target's name (the prefix of the saved files).
        outdir: where to save them (created on the first failure).
    """

    def __init__(self, target: str, outdir: Path) -> None:
        self.target = target
        self.outdir = outdir
        self.counts: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        self.files: dict[str, Path] = {}

    def add(self, data: bytes, exc: BaseException) -> None:
        """Count a failure; save its input and traceback if it is the smallest of its kind."""
        sig = signature(exc)
        self.counts[sig] = self.counts.get(sig, 0) + 1
        if sig in self.sizes and self.sizes[sig] <= len(data):
            return
        self.sizes[sig] = len(data)
        self.outdir.mkdir(parents=True, exist_ok=True)
        name = f"{self.target}-{hashlib.sha1(sig.encode()).hexdigest()[:10]}"
        path = self.outdir / f"{name}.bin"
        path.write_bytes(data)
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        (self.outdir / f"{name}.txt").write_text(f"{sig}\n{len(data)} bytes\n\n{tb[-6000:]}")
        self.files[sig] = path

    def report(self) -> str:
        """The failures, most frequent first, with the file each input was saved to."""
        lines = [f"failures: {sum(self.counts.values())} inputs, {len(self.counts)} distinct"]
        for sig, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:8d} x {sig}  -> {self.files[sig]} ({self.sizes[sig]} bytes)")
        return "\n".join(lines)


def limit_memory(mb: int) -> None:
    """Cap this process's address space at ``mb`` MiB more than it uses now (0: no cap)."""
    if mb <= 0:
        return
    with open("/proc/self/statm") as fh:
        used = int(fh.read().split()[0]) * resource.getpagesize()
    cap = used + (mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def run_one(fn: Callable[[bytes], object], data: bytes, timeout: float) -> BaseException | None:
    """Run one input; return the exception it raised, or None."""
    from fuzz.targets import deadline

    try:
        with deadline(timeout):
            fn(data)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # every escape is a finding
        return exc
    return None


def write_corpus(target: str, corpus: Path) -> None:
    """Write the real seeds of ``target`` into ``corpus`` (if it is empty)."""
    from fuzz.seeds import load_seeds
    from fuzz.targets import KNOWN_LINKTYPES, encode_script

    corpus.mkdir(parents=True, exist_ok=True)
    if any(corpus.iterdir()):
        return
    seeds = load_seeds()
    items: list[bytes] = []
    if target == "parser":
        items = [encode_script(0, [("data", d, c) for d, c in conv])
                 for conv in seeds.conversations]
    elif target == "chunking":
        items = [encode_script(0x38, [("data", d, c) for d, c in conv])
                 for conv in seeds.conversations]
    elif target in ("capture", "pipeline"):
        items = [b"\x00" + raw for raw in seeds.files]
    elif target == "frame":
        items = [KNOWN_LINKTYPES.index(f.linktype).to_bytes(2, "big") + b"\x00" + f.data
                 for f in seeds.frames[::7]]
    else:
        items = [b"\x00" + text.encode() for text in seeds.hexdumps]
    for data in items:
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)


def minimize(fn: Callable[[bytes], object], data: bytes, timeout: float, budget: float) -> bytes:
    """Shrink an input while it fails the same way (delta debugging on bytes)."""
    first = run_one(fn, data, timeout)
    if first is None:
        raise SystemExit("the input does not fail")
    sig = signature(first)
    stop = time.monotonic() + budget

    def same(candidate: bytes) -> bool:
        exc = run_one(fn, candidate, timeout)
        return exc is not None and signature(exc) == sig

    chunk = max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < stop:
        i = 0
        changed = False
        while i < len(data) and time.monotonic() < stop:
            candidate = data[:i] + data[i + chunk :]
            if candidate and same(candidate):
                data = candidate
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return data


def minimize_script(fn: Callable[[bytes], object], data: bytes, timeout: float,
                    budget: float) -> bytes:
    """Shrink a parser script operation by operation while it fails the same way.

    Drops operations, then shortens each data operation (delta debugging
    on its bytes) and each gap, then clears the flags.
    """
    from fuzz.targets import Op, decode_script, encode_script

    first = run_one(fn, data, timeout)
    if first is None:
        raise SystemExit("the input does not fail")
    sig = signature(first)
    stop = time.monotonic() + budget
    flags, ops = decode_script(data)

    def same(f: int, candidate: list[Op]) -> bool:
        exc = run_one(fn, encode_script(f, candidate), timeout)
        return exc is not None and signature(exc) == sig

    changed = True
    while changed and time.monotonic() < stop:
        changed = False
        i = 0
        while i < len(ops) and time.monotonic() < stop:
            if same(flags, ops[:i] + ops[i + 1 :]):
                ops = ops[:i] + ops[i + 1 :]
                changed = True
            else:
                i += 1
        for i in range(len(ops)):
            kind, d, arg = ops[i]
            if kind == "data" and isinstance(arg, bytes):
                chunk = max(1, len(arg) // 2)
                while chunk >= 1 and time.monotonic() < stop:
                    j = 0
                    while j < len(arg):
                        cand = arg[:j] + arg[j + chunk :]
                        if cand and same(flags, [*ops[:i], (kind, d, cand), *ops[i + 1 :]]):
                            arg, changed = cand, True
                            ops[i] = (kind, d, arg)
                        else:
                            j += chunk
                    chunk //= 2
            elif kind == "gap" and isinstance(arg, int):
                for smaller in (1, arg // 2):
                    if 0 < smaller < arg and same(flags, [*ops[:i], (kind, d, smaller),
                                                          *ops[i + 1 :]]):
                        ops[i] = (kind, d, smaller)
                        changed = True
                        break
        if flags and same(0, ops):
            flags, changed = 0, True
    return encode_script(flags, ops)


def fuzz_builtin(target: str, fn: Callable[[bytes], object], findings: Findings, *,
                 inputs: int, seconds: float, seed: int, timeout: float) -> int:
    """The mutation loop: generate, run, record; returns how many inputs ran."""
    from fuzz.generate import GENERATORS
    from fuzz.mutate import Mutator
    from fuzz.seeds import load_seeds

    rng = random.Random(seed)
    mut = Mutator(rng)
    seeds = load_seeds()
    gen = GENERATORS[target]
    start = last = time.monotonic()
    n = 0
    while not inputs or n < inputs:
        data = gen(rng, mut, seeds)
        exc = run_one(fn, data, timeout)
        if exc is not None:
            findings.add(data, exc)
        n += 1
        if n % 64 == 0:
            now = time.monotonic()
            if seconds and now - start >= seconds:
                break
            if now - last >= 60:
                progress(n, now - start, findings)
                last = now
    return n


def progress(n: int, elapsed: float, findings: Findings) -> None:
    """One line on stderr: inputs so far, rate, failures."""
    print(f"... {n} inputs, {elapsed:.0f} s, {n / max(elapsed, 1e-9):.0f}/s, "
          f"{sum(findings.counts.values())} failing ({len(findings.counts)} distinct)",
          file=sys.stderr, flush=True)


def fuzz_atheris(target: str, findings: Findings, *, inputs: int, seconds: float,
                 seed: int, timeout: float, corpus: Path, report: Callable[[int], None]
                 ) -> None:
    """Coverage-guided fuzzing with atheris; never returns (exits after the report)."""
    import atheris

    with atheris.instrument_imports(include=["pgwire_inspect"]):
        from fuzz.targets import TARGETS
    fn = TARGETS[target]
    write_corpus(target, corpus)
    start = time.monotonic()
    count = [0]

    def one_input(data: bytes) -> None:
        exc = run_one(fn, data, timeout)
        if exc is not None:
            findings.add(data, exc)
        count[0] += 1
        n = count[0]
        if (inputs and n >= inputs) or (seconds and n % 256 == 0
                                        and time.monotonic() - start >= seconds):
            report(n)

    max_len = 1 << 16 if target in ("parser", "chunking", "capture", "pipeline") else 1 << 13
    args = [sys.argv[0], str(corpus), f"-max_len={max_len}", f"-seed={seed}",
            "-rss_limit_mb=0", "-print_final_stats=0", "-print_pcs=0"]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=TARGET_NAMES, required=True)
    ap.add_argument("--inputs", type=int, default=0, help="stop after this many inputs")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this many seconds")
    ap.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    ap.add_argument("--memory-mb", type=int, default=2048,
                    help="address space allowed beyond the start-up size (0: no limit)")
    ap.add_argument("--crashes", type=Path, default=FUZZ / "crashes")
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--replay", type=Path, nargs="+", help="run saved inputs and show results")
    ap.add_argument("--minimize", type=Path, help="shrink a saved input, write NAME.min.bin")
    args = ap.parse_args(argv)

    if args.replay or args.minimize:
        from fuzz.targets import TARGETS

        fn = TARGETS[args.target]
        if args.minimize:
            shrink = minimize_script if args.target in ("parser", "chunking") else minimize
            data = shrink(fn, args.minimize.read_bytes(), args.timeout, budget=300)
            out = args.minimize.with_suffix(".min.bin")
            out.write_bytes(data)
            print(f"{len(data)} bytes -> {out}\n{data.hex()}")
            return 0
        bad = 0
        for path in args.replay:
            exc = run_one(fn, path.read_bytes(), args.timeout)
            print(f"{path}: {'ok' if exc is None else signature(exc)}")
            if exc is not None:
                bad += 1
                traceback.print_exception(type(exc), exc, exc.__traceback__, limit=-6)
        return 1 if bad else 0

    if not args.inputs and not args.seconds:
        ap.error("give --inputs or --seconds")
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
            engine = "atheris"
        except ImportError:
            engine = "builtin"
    findings = Findings(args.target, args.crashes)
    start = time.monotonic()

    def report(n: int) -> None:
        elapsed = time.monotonic() - start
        print(f"target {args.target}, engine {engine}: {n} inputs in {elapsed:.1f} s "
              f"({n / max(elapsed, 1e-9):.0f} inputs/s)")
        print(findings.report(), flush=True)
        if engine == "atheris":
            os._exit(1 if findings.counts else 0)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    if engine == "atheris":
        limit_memory(args.memory_mb)
        corpus = args.corpus or FUZZ / "corpus" / args.target
        fuzz_atheris(args.target, findings, inputs=args.inputs, seconds=args.seconds,
                     seed=args.seed, timeout=args.timeout, corpus=corpus, report=report)
        return 0  # not reached
    from fuzz.targets import TARGETS

    limit_memory(args.memory_mb)
    n = fuzz_builtin(args.target, TARGETS[args.target], findings, inputs=args.inputs,
                     seconds=args.seconds, seed=args.seed, timeout=args.timeout)
    report(n)
    return 1 if findings.counts else 0


if __name__ == "__main__":
    sys.exit(main())
