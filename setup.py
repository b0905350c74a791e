"""Build script: the metadata is in setup.cfg; this adds the optional C speed-ups.

``pgwire_inspect/protocol/_speedups.c`` splits runs of DataRow messages and
``pgwire_inspect/render/_speedups.c`` writes their JSON lines. Both are
optional: without a C compiler (or with PGWIRE_INSPECT_PURE_PYTHON=1 at
install time) the package installs and runs as pure Python, with the same
results.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("PGWIRE_INSPECT_PURE_PYTHON", "") in ("", "0"):
    for package in ("protocol", "render"):
        ext_modules.append(Extension(
            f"pgwire_inspect.{package}._speedups",
            sources=[f"pgwire_inspect/{package}/_speedups.c"],
            optional=True,  # a failed compile is a warning, and the install goes on
        ))

setup(ext_modules=ext_modules)
