"""Build script: the metadata is in setup.cfg; this adds the optional C speed-up.

``pgwire_inspect/protocol/_speedups.c`` splits runs of DataRow messages in C.
It is optional: without a C compiler (or with PGWIRE_INSPECT_PURE_PYTHON=1 at
install time) the package installs and runs as pure Python, the same parser
without the speed-up.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("PGWIRE_INSPECT_PURE_PYTHON", "") in ("", "0"):
    ext_modules.append(Extension(
        "pgwire_inspect.protocol._speedups",
        sources=["pgwire_inspect/protocol/_speedups.c"],
        optional=True,  # a failed compile is a warning, and the install goes on
    ))

setup(ext_modules=ext_modules)
