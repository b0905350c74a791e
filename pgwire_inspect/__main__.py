"""``python -m pgwire_inspect``: the same as the ``pgwire-inspect`` command."""

from .cli import main

main()
