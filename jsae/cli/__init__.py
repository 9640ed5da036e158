"""The ``jsae`` command line (the console script ``jsae = "jsae.cli:main"``).

``commands`` builds the parser from one module per command (``ablate``, ``corpus`` for
``ablate --dataset`` and ``corpus-stats``, ``info``, ``train_demo``); ``options`` holds the
arguments and checks they share. This module stays light: ``main`` imports the commands (and
with them torch) itself, so a Ctrl-C while they load exits with status 130 and one line.
"""

from __future__ import annotations

import sys
from typing import Any

INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def main(argv: list[str] | None = None) -> int:
    """Run the ``jsae`` command; its exit status."""
    try:
        from jsae.cli.commands import main as run
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    return run(argv)


def __getattr__(name: str) -> Any:  # the parser and the commands, imported on first use
    if name in ("COMMANDS", "build_parser"):
        from jsae.cli import commands

        return getattr(commands, name)
    raise AttributeError(f"module 'jsae.cli' has no attribute {name!r}")


__all__ = ["COMMANDS", "INTERRUPTED", "build_parser", "main"]
