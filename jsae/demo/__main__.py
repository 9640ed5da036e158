"""``python -m jsae.demo OUTPUT [--quick] [--seed N]``: rebuild the bundle into OUTPUT and
print its metrics table (``jsae train-demo`` builds it the same way, without the table)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jsae.demo.build import build_demo
from jsae.demo.targets import metrics_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild jsae's bundled default.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metrics = build_demo(args.output, quick=args.quick, seed=args.seed)
    print(metrics_table(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
