"""The ``jsae`` command line: ``jsae ablate``, ``jsae corpus-stats``, ``jsae info``,
``jsae export-sae-lens``, ``jsae train-demo``, ``jsae features``; one module per command.

Errors a user can cause print one line (``error: ...``) and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from jsae.cli import ablate, corpus, export, features, info, train_demo
from jsae.errors import JSAEError

AddParser = Callable[[argparse._SubParsersAction, str], None]
Command = Callable[[argparse.Namespace], int]

COMMANDS: dict[str, tuple[AddParser, Command]] = {
    "ablate": (ablate.add_parser, ablate.cmd_ablate),
    "corpus-stats": (corpus.add_stats_parser, corpus.cmd_corpus_stats),
    "info": (info.add_parser, info.cmd_info),
    "export-sae-lens": (export.add_parser, export.cmd_export_sae_lens),
    "train-demo": (train_demo.add_parser, train_demo.cmd_train_demo),
    "features": (features.add_parser, features.cmd_features),
}
"""Each command's name, the function adding its arguments, and the function running it (its
exit status)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jsae",
        description="Test whether JSAE Jacobian sparsity reflects causal sparsity in an MLP.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_parser, _) in COMMANDS.items():
        add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, command = COMMANDS[args.command]
    try:
        return command(args)
    except JSAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
