#!/usr/bin/env python
"""Wider trained pairs for the pruning benchmark: the bundled default's recipe at d_sae 4096.

The bundled pairs have d_sae 1024 and k 16: 2k is 3% of the features, and the output SAE's
scan is a small part of a row's cost, so they show little of what pruning does on trained
pairs. This trains layer 1's plain and JSAE pairs exactly as ``jsae.demo.build`` does (same
model, SAE split, steps, learning rate, λ, seed), with d_sae 4096 (``--d-sae``), and writes
them as a source folder that ``benchmarks/bench_prune.py --trained DIR`` reads. About 10
minutes on 2 busy cores; nothing downloads.

    python benchmarks/train_wide_pairs.py --output /tmp/jsae-wide
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jsae.demo.build import pair_config  # noqa: E402
from jsae.demo.corpus import split_documents, stdlib_documents  # noqa: E402
from jsae.demo.settings import FULL  # noqa: E402
from jsae.loading import load_source, save_source  # noqa: E402
from jsae.train import tokenize_documents, train_pair  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="the source folder to write")
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    demo = load_source("demo")
    model = demo.model
    docs = stdlib_documents(FULL.max_chars)
    splits = split_documents(docs, args.seed, FULL.heldout_fraction, FULL.sae_fraction)
    tokens = tokenize_documents(model, [d.text for d in splits["sae"]], FULL.n_ctx)
    pairs: dict[str, dict] = {"plain": {}, "jsae": {}}
    for kind, coefficient in (
        ("plain", 0.0),
        ("jsae", FULL.for_layer("jacobian_coefficients", args.layer)),
    ):
        config = replace(pair_config(FULL, args.layer, coefficient, args.seed), d_sae=args.d_sae)
        t0 = time.perf_counter()
        result = train_pair(model, tokens, config, progress=False)
        last = result.history[-1] if result.history else {}
        print(
            f"layer {args.layer} {kind} d_sae {args.d_sae}: EV in {1 - last.get('fvu_in', 1):.3f}"
            f", out {1 - last.get('fvu_out', 1):.3f}, dead {result.dead_fraction_in:.3f}/"
            f"{result.dead_fraction_out:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        pairs[kind][args.layer] = result.pair
    save_source(args.output, model, pairs, info={"description": f"d_sae {args.d_sae} pairs"})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
