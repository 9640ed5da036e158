"""Record the shipped demo bundle's signed per-connection values for the golden test.

Run once, from the repository root::

    PYTHONPATH=$PWD python -m tests.golden.make_golden

It writes ``tests/golden/demo_signed.npz``: for every pair of the bundle in ``jsae/assets/demo``
(each kind and layer), the ``unit``-mode ``jacobian`` and ``diff`` of every connection of the
first ``TOKENS`` held-out tokens (the first stored sequence, positions 1.. after BOS), with the
input and output feature ids of each token. ``tests/test_demo_bundle.py`` recomputes them and
compares signed values, so a sign flip of J (or of diff) fails even though every mean of |.|
stays the same.

The file records what the *shipped* bundle gives: it must be rerun only when the bundle is
rebuilt (``python -m jsae.demo``), never to make a failing test pass after an engine change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jsae.ablation import AblationConfig, ablate_activations
from jsae.demo import HELDOUT_FILE, load_heldout_sample
from jsae.loading import DEMO_DIR, Source, load_source
from jsae.prompt import mlp_activations
from jsae.sandwich import Sandwich

GOLDEN = Path(__file__).with_name("demo_signed.npz")
TOKENS = 2
"""Held-out tokens recorded: positions 1..TOKENS of the first held-out sequence."""


@torch.no_grad()
def signed_values(source: Source) -> dict[str, np.ndarray]:
    """Per pair ``{kind}_{layer}_{name}``: ``in_feature``/``out_feature`` ([TOKENS, k], the
    engine's order), ``jacobian`` and ``diff`` ([TOKENS, k_in, k_out], unit mode)."""
    model = source.model
    tokens = load_heldout_sample(DEMO_DIR / HELDOUT_FILE)[:1]
    layers = sorted({layer for kind in source.kinds for layer in source.layers(kind)})
    acts = mlp_activations(model, tokens, layers)
    values = {}
    for kind in source.kinds:
        for layer in source.layers(kind):
            pair = source.pair(layer, kind)
            x = acts[layer][0][0, 1 : 1 + TOKENS].float()
            got = ablate_activations(Sandwich(model, pair), x, AblationConfig(mode="unit"))
            shape = (TOKENS, pair.k_in, pair.k_out)
            key = f"{kind}_{layer}"
            values[f"{key}_in_feature"] = got.in_feature.reshape(shape)[:, :, 0].numpy()
            values[f"{key}_out_feature"] = got.out_feature.reshape(shape)[:, 0, :].numpy()
            values[f"{key}_jacobian"] = got.jacobian.reshape(shape).numpy()
            values[f"{key}_diff"] = got.diff.reshape(shape).numpy()
    return values


def main() -> None:
    values = signed_values(load_source("demo"))
    np.savez_compressed(
        GOLDEN,
        **{
            name: v.astype(np.int16) if v.dtype.kind == "i" else v.astype(np.float32)
            for name, v in values.items()
        },
    )
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes, {len(values)} arrays)")


if __name__ == "__main__":
    main()
