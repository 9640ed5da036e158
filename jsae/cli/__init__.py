"""The ``jsae`` command line (the console script ``jsae = "jsae.cli:main"``).

``commands`` builds the parser from one module per command (``ablate``, ``corpus`` for
``ablate --dataset`` and ``corpus-stats``, ``info``, ``train_demo``); ``options`` holds the
arguments and checks they share.
"""

from jsae.cli.commands import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
