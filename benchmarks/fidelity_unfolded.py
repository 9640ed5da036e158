"""How far the old MLP input (``ln2.hook_normalized``, before the LayerNorm's gain and bias
in TransformerLens 3) is from the true one (what ``blocks.L.mlp`` receives), on small random
models with unfolded and folded LayerNorms: the sandwich's MLP pre-activations and output
against the model's own ``mlp.hook_pre`` / ``hook_mlp_out``, and the importance ratio the
ablation reports with each input.

    python benchmarks/fidelity_unfolded.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsae import ablation as engine  # noqa: E402
from jsae.pair import hook_in_name  # noqa: E402
from jsae.prompt import mlp_inputs  # noqa: E402
from jsae.sandwich import Sandwich  # noqa: E402
from jsae.stats import importance_ratio, summarize  # noqa: E402
from tests.helpers import TEXT, tiny_model, tiny_pair  # noqa: E402

LAYER = 1


def hook_normalized(model, tokens, layer):
    """The pre-fix MLP input: the TransformerLens 3 hook, before gain and bias."""
    _, cache = model.run_with_cache(tokens[None], names_filter=[hook_in_name(layer)])
    return cache[hook_in_name(layer)][0]


def measure(folded: bool) -> dict[str, float]:
    torch.manual_seed(0)
    model = tiny_model(d_model=64, d_mlp=256, n_ctx=128, folded=folded)
    pair = tiny_pair(model, layer=LAYER, d_sae=256, k=16)
    tokens = model.to_tokens(TEXT)[0]
    hooks = [f"blocks.{LAYER}.mlp.hook_pre", f"blocks.{LAYER}.hook_mlp_out"]
    _, cache = model.run_with_cache(tokens[None], names_filter=hooks)
    sandwich = Sandwich(model, pair)
    figures = {}
    for label, read in (("before", hook_normalized), ("after", mlp_inputs)):
        out = sandwich(read(model, tokens, LAYER))
        figures[f"{label}: max |pre - hook_pre|"] = (out.pre - cache[hooks[0]][0]).abs().max()
        figures[f"{label}: max |mlp_out - hook_mlp_out|"] = (
            (out.mlp_out - cache[hooks[1]][0]).abs().max()
        )
        original = engine.mlp_inputs
        engine.mlp_inputs = read  # the engine reads its input through this name
        try:
            table = engine.ablate(model, pair, TEXT, eps=0.01).table
        finally:
            engine.mlp_inputs = original
        figures[f"{label}: important/unimportant ratio"] = importance_ratio(summarize(table))
    return {k: float(v) for k, v in figures.items()}


def main() -> None:
    for folded in (False, True):
        print(f"LayerNorm {'folded (LNPre)' if folded else 'unfolded (LN), random gain/bias'}:")
        for name, value in measure(folded).items():
            print(f"  {name:40s} {value:.4g}")


if __name__ == "__main__":
    main()
