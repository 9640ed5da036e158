"""``jsae train-demo``: rebuild the bundled default (model, pairs, metrics) from scratch."""

from __future__ import annotations

import argparse
from pathlib import Path

from jsae.demo import build_demo


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    demo = sub.add_parser(name, help="rebuild the bundled default from scratch")
    demo.add_argument("--output", type=Path, required=True, help="folder to write the bundle to")
    demo.add_argument("--quick", action="store_true", help="a tiny, fast build (for tests)")
    demo.add_argument("--seed", type=int, default=0)


def cmd_train_demo(args: argparse.Namespace) -> int:
    build_demo(args.output, quick=args.quick, seed=args.seed)
    print(f"wrote the bundle to {args.output}")
    return 0
