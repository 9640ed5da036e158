"""The downstream KL (``jsae.analysis.downstream``) of a source's pairs on some token rows.

For each (layer, kind, mode), every row of tokens is one prompt: its positions after BOS are
ablated, their joint curves computed with the pair on the model it reads
(``Source.model_for``), and the rows' ``DownstreamKL`` merged exactly. ``summary_frame``
lays the figures out one row per (layer, kind, mode, order).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from jsae.ablation import AblationConfig
from jsae.analysis.downstream import (
    DOWNSTREAM_MEMORY_BUDGET,
    KEEP_ORDERS,
    DownstreamKL,
    downstream_kl,
)
from jsae.analysis.joint import joint_curves
from jsae.errors import InputError
from jsae.loading import Source
from jsae.prompt import first_ablated, mlp_inputs
from jsae.sandwich import Sandwich

SWEEP_MODES = ("zero", "unit")
"""The ablation modes ``downstream_results`` runs unless told otherwise."""
DOWNSTREAM_SUMMARY_COLUMNS = (
    "layer", "kind", "mode", "order", "positions", "kl_none_kept", "area", "relative_area",
    "fewer_than_random",
)  # fmt: skip
"""Columns of ``summary_frame``: one row per (layer, kind, mode, order); ``fewer_than_random``
is NaN for the random order itself."""

Key = tuple[int, str, str]


@torch.no_grad()
def downstream_results(
    source: Source,
    tokens: Int[Tensor, "rows pos"],
    *,
    layers: Iterable[int] | None = None,
    kinds: Iterable[str] | None = None,
    modes: Iterable[str] = SWEEP_MODES,
    memory_budget: int = DOWNSTREAM_MEMORY_BUDGET,
) -> dict[Key, DownstreamKL]:
    """``DownstreamKL`` per (layer, kind, mode) over every row of ``tokens`` (BOS left out);
    all layers and kinds of the source unless named."""
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise InputError(f"Pass token rows [rows, pos]; got shape {tuple(tokens.shape)}.")
    results: dict[Key, DownstreamKL] = {}
    for kind in kinds or source.kinds:
        for layer in source.layers(kind) if layers is None else layers:
            model, pair = source.model_for(layer, kind), source.pair(layer, kind)
            sandwich = Sandwich(model, pair)
            bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
            inputs = [mlp_inputs(model, row, layer) for row in tokens]
            for mode in modes:
                config = AblationConfig(mode=mode, memory_budget=memory_budget)
                merged = None
                for row, x in zip(tokens, inputs, strict=True):
                    positions = torch.arange(first_ablated(row, bos, False), len(row))
                    x = x[positions].to(pair.sae_in.W_enc.dtype)
                    curves = joint_curves(sandwich, x, config, positions)
                    part = downstream_kl(model, pair, row, curves, memory_budget)
                    merged = part if merged is None else merged.merge(part)
                results[(layer, kind, mode)] = merged
    return results


def summary_frame(results: dict[Key, DownstreamKL]) -> pd.DataFrame:
    """``DOWNSTREAM_SUMMARY_COLUMNS``: each result's areas and N× per order."""
    rows = []
    for (layer, kind, mode), result in results.items():
        table = result.table
        none_kept = float(table[table["m_kept"] == 0]["kl_mean"].iloc[0])
        area, relative, fewer = result.area, result.relative_area, result.fewer_than_random
        for order in KEEP_ORDERS:
            rows.append(
                (layer, kind, mode, order, result.n_positions, none_kept, area[order],
                 relative[order], fewer.get(order, float("nan")))
            )  # fmt: skip
    return pd.DataFrame(rows, columns=list(DOWNSTREAM_SUMMARY_COLUMNS))
