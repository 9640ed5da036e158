"""Downstream KL of the bundled default's pairs on its held-out sample (issue 17, item 3).

    python benchmarks/downstream_kl.py                 # first held-out sequence (255 tokens)
    python benchmarks/downstream_kl.py --sequences 4 --layers 0 1 --modes zero

Every layer, the JSAE and plain pairs, zero and unit modes: each output feature keeps only its
m inputs with the largest |J| (the single-connection oracle's, random ones), the patched MLP
output is spliced in and the next-token KL(clean ‖ patched) averaged over the ablated tokens
(``jsae.analysis.downstream``). Prints, per (layer, kind, mode, order), the KL with nothing
kept, the area under KL against kept connections per token (absolute, and relative to the
k_in·k_out connections) and N× fewer connections than random at equal KL.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsae.analysis.downstream_sweep import SWEEP_MODES, downstream_results, summary_frame  # noqa: E402
from jsae.demo.measure import load_heldout_sample  # noqa: E402
from jsae.demo.settings import HELDOUT_FILE  # noqa: E402
from jsae.loading import DEMO_DIR, load_source  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1, help="held-out rows (256 tokens)")
    parser.add_argument("--layers", type=int, nargs="*", default=None)
    parser.add_argument("--kinds", nargs="*", default=None, help="default: every kind")
    parser.add_argument("--modes", nargs="*", default=list(SWEEP_MODES))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = load_source("demo")
    tokens = load_heldout_sample(DEMO_DIR / HELDOUT_FILE)[: args.sequences]
    start = time.perf_counter()
    results = downstream_results(
        source, tokens, layers=args.layers, kinds=args.kinds, modes=args.modes
    )
    frame = summary_frame(results)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"\n{len(results)} pairs × modes in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
