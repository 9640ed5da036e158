"""How good a bundle is: its pairs' quality on held-out tokens.

Per pair: explained variance of each SAE, the features that never fire on the sample, the
output code's health (:func:`jsae.analysis.pair_health`: its within-token CV, binary explained
variance and margins), the fraction of active |J| above ε and mean |J| (over every token's
k × k active Jacobian), and the ``unit``-mode ablation summary at ε (split by
:func:`jsae.table.is_important`), with each kind's ratio at the fraction matched across the
layer's kinds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.ablation import AblationConfig, ablate_activations
from jsae.analysis import effect_statistics, matched_fraction, pair_health, verdict
from jsae.analysis.sweep import MATCHED_REFERENCE
from jsae.demo.kinds import PLAIN
from jsae.demo.language_model import language_model_loss
from jsae.demo.settings import HELDOUT_FILE
from jsae.errors import InputError
from jsae.loading import DEMO_DIR, DEMO_SOURCE, Source, load_source
from jsae.pair import JSAEPair
from jsae.prompt import mlp_activations
from jsae.sandwich import Sandwich
from jsae.table import DEFAULT_EPS, connection_columns, is_important
from jsae.train import explained_variance, tokenize_documents

BATCH_SEQUENCES = 16
"""Held-out sequences per forward pass of the model."""


@torch.no_grad()
def measure_bundle(
    source: Source | str | os.PathLike,
    heldout: str | Int[Tensor, "n ctx"] | os.PathLike | None = None,
    *,
    ablation: bool = True,
    eps: float = DEFAULT_EPS,
    kinds: tuple[str, ...] | None = None,
    layers: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Quality of a source's pairs on held-out text.

    ``heldout`` is text, token ids ``[sequences, context]`` (rows start with BOS), or the
    path of a ``heldout_tokens.safetensors``; None uses the sample stored in the bundle.
    BOS positions are left out of every statistic. Per pair: ``ev_in``/``ev_out``
    (explained variance, 1 - Σ||x - x̂||² / Σ||x - x̄||²), ``unfired_in``/``unfired_out``
    (features that never fire on the sample), the output code's health (``output_cv``,
    ``binary_ev_out``, ``margin_median``, ``margin_q10``: see :mod:`jsae.analysis.health`),
    ``frac_abs_j_gt_eps`` and ``mean_abs_j`` (over every token's k × k active Jacobian), and
    with ``ablation`` the ``unit``-mode ablation summary at ``eps``: mean |diff| of the
    important (|J| > eps) and unimportant connections.
    """
    if not isinstance(source, Source):
        source = load_source(source)
    model = source.model
    tokens = _heldout_tokens(source, heldout)
    kinds = kinds or tuple(source.kinds)
    wanted = {
        kind: [layer for layer in source.layers(kind) if layers is None or layer in layers]
        for kind in kinds
    }
    needed = sorted({layer for by_layer in wanted.values() for layer in by_layer})
    acts: dict[int, tuple[list[Tensor], list[Tensor]]] = {layer: ([], []) for layer in needed}
    bos = model.tokenizer.bos_token_id
    keep = tokens != bos
    for start in range(0, len(tokens), BATCH_SEQUENCES):
        rows = slice(start, start + BATCH_SEQUENCES)
        for layer, (x, y) in mlp_activations(model, tokens[rows], needed).items():
            acts[layer][0].append(x[keep[rows]].float())
            acts[layer][1].append(y[keep[rows]].float())
    stacked = {layer: (torch.cat(xs), torch.cat(ys)) for layer, (xs, ys) in acts.items()}
    result: dict[str, Any] = {
        "tokens": int(keep.sum()),
        "sequences": len(tokens),
        "lm_loss": language_model_loss(model, tokens, BATCH_SEQUENCES),
        "eps": eps,
        "pairs": {},
    }
    for kind in wanted:
        result["pairs"][kind] = {}
    for layer in needed:
        tables = {}
        for kind in (kind for kind, by_layer in wanted.items() if layer in by_layer):
            x, y = stacked[layer]
            stats, tables[kind] = _pair_statistics(
                model, source.pair(layer, kind), x, y, eps, ablation
            )
            result["pairs"][kind][str(layer)] = stats
        if ablation:
            for kind, matched in matched_ratios(tables, eps).items():
                result["pairs"][kind][str(layer)]["matched"] = matched
    return result


def matched_ratios(tables: dict[str, pd.DataFrame], eps: float) -> dict[str, dict[str, float]]:
    """Per kind, its ratio of mean |diff| important / unimportant when every kind of the
    layer is split at the same fraction of connections (:func:`jsae.analysis.matched_fraction`,
    the ``jsae`` kind's fraction at ``eps``), and for a JSAE kind the ``plain`` pair's ratio
    at the JSAE's own fraction at ``eps`` (does it beat plain at equal sparsity?)."""
    found: dict[str, dict[str, float]] = {}
    if MATCHED_REFERENCE in tables:
        matched = matched_fraction(tables, None, MATCHED_REFERENCE, eps).set_index("kind")
        for kind in tables:
            found[kind] = {
                "fraction": float(matched.loc[kind, "fraction"]),
                "ratio": float(matched.loc[kind, "ratio"]),
            }
    plain = PLAIN.name
    if plain in tables:
        for kind in (k for k in tables if k != plain):
            own = matched_fraction({kind: tables[kind], plain: tables[plain]}, None, kind, eps)
            found.setdefault(kind, {})["plain_ratio_at_own_fraction"] = float(
                own.set_index("kind").loc[plain, "ratio"]
            )
    return found


CAUSAL_FIELDS = (
    "ratio",
    "ratio_without_exits",
    "exit_share_unimportant",
    "exit_mass_share",
    "p_exit",
    "auc",
    "spearman",
    "capture",
    "capture_oracle",
    "on_line_count",
    "on_line_mass",
)
"""The ε-free statistics (``jsae.analysis.EffectStatistics``) a pair's metrics record."""


@torch.no_grad()
def measure_pair(
    model: HookedTransformer,
    pair: JSAEPair,
    x: Float[Tensor, "tokens d_model"],
    y: Float[Tensor, "tokens d_model"],
    *,
    eps: float = DEFAULT_EPS,
    ablation: bool = True,
) -> dict[str, Any]:
    """One pair's statistics on MLP inputs ``x`` and the model's MLP outputs ``y``."""
    return _pair_statistics(model, pair, x, y, eps, ablation)[0]


def _pair_statistics(
    model: HookedTransformer,
    pair: JSAEPair,
    x: Float[Tensor, "tokens d_model"],
    y: Float[Tensor, "tokens d_model"],
    eps: float,
    ablation: bool,
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """``measure_pair``'s statistics, and the ablation's connection table (None without)."""
    sandwich = Sandwich(model, pair)
    health = pair_health(sandwich, x, y)
    stats: dict[str, Any] = {
        "ev_in": explained_variance(pair.sae_in, x),
        "ev_out": health.ev_out,
        "unfired_in": health.unfired_in,
        "unfired_out": health.unfired_out,
        "output_cv": health.output_cv,
        "binary_ev_out": health.binary_ev_out,
        "margin_median": health.margin_median,
        "margin_q10": health.margin_q10,
    }
    jacobian = sandwich(x).jacobian.abs()
    stats["frac_abs_j_gt_eps"] = float(is_important(jacobian, eps).double().mean())
    stats["mean_abs_j"] = float(jacobian.double().mean())
    if ablation:
        connections = ablate_activations(sandwich, x, AblationConfig(mode="unit"))
        important = is_important(connections.jacobian, eps)
        diff = connections.diff.abs().double()
        stats["ablation"] = {
            "mode": "unit",
            "eps": eps,
            "important_mean_abs_diff": _mean(diff[important]),
            "unimportant_mean_abs_diff": _mean(diff[~important]),
            "important_connections": int(important.sum()),
            "unimportant_connections": int((~important).sum()),
        }
        # every held-out token is its own position, so the statistics group by token
        table = pd.DataFrame(connection_columns(connections))
        effect = effect_statistics(table, eps, n_bootstrap=0)
        stats["causal"] = {name: float(getattr(effect, name)) for name in CAUSAL_FIELDS}
        found = verdict(effect, health)
        stats["verdict"] = {"level": found.level, "perverse": found.perverse}
        return stats, table
    return stats, None


def _mean(values: Tensor) -> float | None:
    return float(values.mean()) if len(values) else None


def _heldout_tokens(source: Source, heldout: Any) -> Int[Tensor, "n ctx"]:
    """``measure_bundle``'s ``heldout`` as rows of token ids (see there)."""
    model = source.model
    if heldout is None:
        folder = DEMO_DIR if source.name == DEMO_SOURCE else Path(source.name)
        if not (folder / HELDOUT_FILE).is_file():
            raise InputError("Pass the held-out text or tokens: this source stores no sample.")
        heldout = folder / HELDOUT_FILE
    if isinstance(heldout, Tensor):
        tokens = heldout.long()
    elif isinstance(heldout, os.PathLike) or (
        isinstance(heldout, str) and heldout.endswith(".safetensors") and Path(heldout).is_file()
    ):
        tokens = load_heldout_sample(heldout)
    else:
        tokens = tokenize_documents(model, [heldout], model.cfg.n_ctx)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.numel() == 0:
        raise InputError("The held-out text is too short to fill one sequence.")
    return tokens


def load_heldout_sample(path: str | os.PathLike) -> Int[Tensor, "n ctx"]:
    """The token ids of a bundle's ``heldout_tokens.safetensors`` (stored as int32)."""
    return load_file(str(path))["tokens"].long()
