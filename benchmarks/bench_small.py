"""Engine vs the notebook's per-connection loop on a small random pair (seconds to run).

    python benchmarks/bench_small.py

Prints one line: connections, median engine and loop times, and their ratio. Both are run
in this process, interleaved, so the ratio holds on a busy machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsae.ablation import AblationConfig, ablate_activations  # noqa: E402
from jsae.prompt import mlp_inputs, tokenize  # noqa: E402
from jsae.sandwich import Sandwich  # noqa: E402
from tests.helpers import TEXT, tiny_model, tiny_pair  # noqa: E402
from tests.reference import notebook_loop  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    model = tiny_model(d_model=64, d_mlp=256, n_ctx=128)
    pair = tiny_pair(model, layer=1, d_sae=512, k=16)
    x = mlp_inputs(model, tokenize(model, TEXT).tokens, 1)[1:33]
    sandwich = Sandwich(model, pair)
    ablate_activations(sandwich, x, AblationConfig())  # warm-up
    engine, loop = [], []
    for _ in range(3):
        for _ in range(3):
            start = time.perf_counter()
            ablate_activations(sandwich, x, AblationConfig())
            engine.append(time.perf_counter() - start)
        start = time.perf_counter()
        notebook_loop(model, pair, x)
        loop.append(time.perf_counter() - start)
    e, lp = statistics.median(engine), statistics.median(loop)
    n = len(x) * pair.k_in * pair.k_out
    print(
        f"{len(x)} tokens x {pair.k_out}x{pair.k_in} = {n:,} connections (d_model 64, d_mlp 256, "
        f"d_sae 512): engine {e * 1e3:.1f} ms, notebook loop {lp * 1e3:.0f} ms, "
        f"loop/engine {lp / e:.0f}x"
    )


if __name__ == "__main__":
    main()
