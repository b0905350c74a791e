"""Fuzzing of pgwire-inspect's decoders: seeds, mutations, targets and a driver.

- :mod:`fuzz.seeds`: real inputs to start from (the relay byte logs of
  ``captures/*.json``, the TCP payloads and frames of ``captures/*.pcap``
  and of the Zeek captures beside the project, the files themselves).
- :mod:`fuzz.mutate`: a small mutation engine (bit flips, interesting
  integers, message-aware edits of PostgreSQL streams, splicing).
- :mod:`fuzz.checks`: `InvariantError` (a broken promise) and a time limit.
- :mod:`fuzz.scripts`: parser scripts (bytes, gaps, drains, ends for
  either direction) and the parser targets.
- :mod:`fuzz.targets`: one function per target that takes fuzzer bytes and
  raises when an invariant breaks; the invariants are the documented
  behaviour of the decoders.
- :mod:`fuzz.generate`: the mutation loop's input generators.
- ``fuzz/run.py``: the driver for long runs (atheris or the mutation loop).

The hypothesis tests in ``tests/fuzz/`` run the same targets on a small
budget in every test run.
"""

from __future__ import annotations
