"""Downstream KL: what the model's next-token prediction loses when output features keep only
their top-m inputs (interaction sparsity, as SCALAR, arXiv 2511.07572, measures it).

For a kept-input budget m (0 .. k_in), each active output feature j of each ablated token
keeps its m highest-ranked inputs under an order of ``KEEP_ORDERS`` and loses the rest
together: the first k_in - m inputs of that order's removal curve (``jsae.analysis.joint``),
so j's activation becomes a'_j = act[t, o, j, k_in - m] (top k re-selected). Only the
originally active output features are recomputed (a feature that would enter the top k is not
added). The output SAE's decode is linear, so decoding the modified code and adding back the
SAE's error term (mlp_out - decode(encode(mlp_out))) is

    mlp_out' = mlp_out + sum_j (a'_j - a_j) W_dec_out[j].

mlp_out' replaces ``blocks.L.hook_mlp_out`` at the ablated positions only (every other
position keeps its clean value), all of them in the same run, so a position's prediction also
carries the earlier positions' changes through attention; the rest of the model runs, and at
each ablated position

    KL(clean || patched) = sum_v p(v) (log p(v) - log q(v))

of the next-token distributions (log-softmax in float64). A token keeps m · k_out
connections of its k_in · k_out; m = k_in changes nothing (KL 0), m = 0 keeps none.

Figures per order, from the mean KL curve K_o(c) over kept connections per token c = m k_out:

* the **area** under K_o, trapezoids over c (absolute), and over c / (k_in k_out) = m / k_in
  (relative, as SCALAR normalises by the dense connection count): smaller is sparser;
* **N× fewer connections than random at equal KL**: for each interior budget m = 1 .. k_in - 1
  of order o, c_random(K_o(m)) / (m k_out), where c_random(K) is the fewest connections the
  random order needs to reach KL <= K, read off the *lower monotone envelope* of the random
  curve (E(c_m) = min over m' <= m of K_random(m'), the best KL random reaches with at most
  c_m connections) by linear interpolation between budgets; NaN where K_o(m) lies outside
  E's range [E(k_in k_out), K_random(0)]. N is the median of the finite ratios (NaN if none):
  N = 2 means the order reaches a KL with half the connections random needs.

The sums over positions are kept as exact integers (``jsae.exact``), so results of many
prompts ``merge`` exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.analysis.effect import NAN_CI, SUMMARY_COLUMNS
from jsae.analysis.joint import ORDERS, JointCurves
from jsae.errors import InputError
from jsae.exact import exact_sum, exact_value
from jsae.finite import check_finite_activations
from jsae.pair import JSAEPair, hook_out_name
from jsae.prompt import hook_lock

KEEP_ORDERS = ("jacobian", "oracle", "random")
"""The orders an output feature keeps its inputs by (its last m: the largest |J|, the largest
single-connection |diff|, a random m). ``reverse`` would keep the smallest |J|."""
DOWNSTREAM_COLUMNS = (
    "order", "m_kept", "kept_connections", "fraction", "positions", "kl_sum", "kl_mean",
)  # fmt: skip
"""Columns of ``DownstreamKL.table``: one row per (order, m_kept), m_kept = 0 .. k_in."""
DOWNSTREAM_MEMORY_BUDGET = 1 << 30
"""Bytes the patched forward passes of one batch of variants may take (about 1 GiB)."""


def kept_deltas(
    curves: JointCurves, w_dec_out: Float[Tensor, "d_sae d_model"]
) -> Float[Tensor, "orders m tokens d_model"]:
    """mlp_out' - mlp_out = sum_j (a'_j - a_j) W_dec_out[j] for every order of ``KEEP_ORDERS``
    and kept budget m = 0 .. k_in (exactly 0 at m = k_in)."""
    o = [ORDERS.index(name) for name in KEEP_ORDERS]
    diff = curves.diff[:, o].flip(-1)  # tokens orders k_out m_kept: k_in - m removed
    rows = w_dec_out.detach().to(diff)[curves.out_idx]  # tokens k_out d_model
    return torch.einsum("tojm,tjd->omtd", diff, rows)


def splice_hook(positions: Int[Tensor, " tokens"], deltas: Float[Tensor, "batch tokens d_model"]):
    """A TransformerLens hook adding row b's ``deltas[b]`` to ``hook_mlp_out`` at
    ``positions`` (the other positions keep their value)."""

    def hook(value: Tensor, hook: object) -> Tensor:
        value[:, positions] += deltas.to(value)
        return value

    return hook


@torch.no_grad()
def spliced_logits(
    model: HookedTransformer,
    layer: int,
    tokens: Int[Tensor, " pos"],
    positions: Int[Tensor, " tokens"],
    deltas: Float[Tensor, "batch tokens d_model"],
) -> Float[Tensor, "batch pos d_vocab"]:
    """The logits of ``len(deltas)`` copies of ``tokens``, copy b with block ``layer``'s MLP
    output moved by ``deltas[b]`` at ``positions``."""
    device = model.cfg.device
    batch = tokens.to(device)[None].expand(len(deltas), -1)
    hook = splice_hook(positions.to(device), deltas.to(device))
    with hook_lock(model):  # the hook lives on a shared module (see jsae.prompt.hook_lock)
        return model.run_with_hooks(batch, fwd_hooks=[(hook_out_name(layer), hook)])


def _log_probs(logits: Tensor) -> Tensor:
    return torch.log_softmax(logits.double(), dim=-1)


def kl_divergence(
    log_p: Float[Tensor, "*batch d_vocab"], log_q: Float[Tensor, "*batch d_vocab"]
) -> Float[Tensor, " *batch"]:
    """KL(p || q) from log-probabilities (a token with p = 0 adds nothing)."""
    return torch.where(log_p > -math.inf, log_p.exp() * (log_p - log_q), 0.0).sum(-1)


def variants_per_batch(model: HookedTransformer, n_pos: int, memory_budget: int) -> int:
    """How many patched copies of an ``n_pos``-token prompt one forward pass may hold:
    logits in float32 and their float64 log-softmax (with a temporary), attention patterns
    and the MLP's hidden layer."""
    cfg = model.cfg
    row = n_pos * (28 * cfg.d_vocab_out + 12 * cfg.n_heads * n_pos + 8 * (cfg.d_mlp or 0))
    return max(1, memory_budget // max(1, row))


def _check(model: HookedTransformer, pair: JSAEPair, tokens: Tensor, curves: JointCurves) -> None:
    if tokens.ndim != 1:
        raise InputError(f"Pass one prompt's token ids (1-D), not shape {tuple(tokens.shape)}.")
    if not 0 <= pair.layer < model.cfg.n_layers:
        raise InputError(f"The pair reads layer {pair.layer}; the model has {model.cfg.n_layers}.")
    if (curves.k_in, curves.k_out) != (pair.k_in, pair.k_out):
        raise InputError(
            f"The curves have k_in={curves.k_in}, k_out={curves.k_out}; the pair "
            f"{pair.k_in}, {pair.k_out}. Compute the curves with this pair."
        )
    inside = (curves.positions >= 0) & (curves.positions < len(tokens))
    if not bool(inside.all()):
        raise InputError(
            f"The curves' positions run past the prompt's {len(tokens)} tokens: pass the "
            "tokens the curves were computed on."
        )


@torch.no_grad()
def downstream_kl(
    model: HookedTransformer,
    pair: JSAEPair,
    tokens: Int[Tensor, " pos"],
    curves: JointCurves,
    memory_budget: int = DOWNSTREAM_MEMORY_BUDGET,
) -> DownstreamKL:
    """The KL of every (order, kept budget m) variant at every ablated position of one prompt.

    ``curves`` are the joint ablation curves of the prompt's ablated positions (their
    ``positions``), computed with ``pair`` on ``model`` (for a randomized-LLM control, its
    own model: ``Source.model_for``). All variants run as a batch of identical token rows,
    ``variants_per_batch`` at a time; a variant whose MLP output equals the clean one (every
    input kept) has the clean distribution and is not run."""
    _check(model, pair, tokens, curves)
    k_in, k_out, n = curves.k_in, curves.k_out, curves.n_tokens
    per_position = np.zeros((n, len(KEEP_ORDERS), k_in + 1))
    if n == 0:
        return DownstreamKL.of(per_position, k_out)
    positions = curves.positions
    deltas = kept_deltas(curves, pair.sae_out.W_dec).flatten(0, 1)  # variants tokens d_model
    todo = deltas.flatten(1).any(1).nonzero()[:, 0].tolist()
    with hook_lock(model):
        clean = model(tokens.to(model.cfg.device)[None])[0, positions.to(model.cfg.device)]
    log_p = _log_probs(clean)
    kl = torch.zeros(len(deltas), n, dtype=torch.float64)
    step = variants_per_batch(model, len(tokens), memory_budget)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        logits = spliced_logits(model, pair.layer, tokens, positions, deltas[chunk])
        kl[chunk] = kl_divergence(log_p, _log_probs(logits[:, positions.to(logits.device)])).cpu()
    check_finite_activations(
        (("the downstream KL divergences", kl),), f"at layer {pair.layer} ({pair.kind} pair)"
    )
    per_position[:] = kl.view(len(KEEP_ORDERS), k_in + 1, n).permute(2, 0, 1).numpy()
    return DownstreamKL.of(per_position, k_out)


def kl_areas(table: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
    """Per order, the area under mean KL against kept connections per token (trapezoids),
    and against kept connections / (k_in k_out), i.e. ``fraction``."""
    absolute, relative = {}, {}
    for order, part in table.groupby("order", sort=False):
        part = part.sort_values("m_kept")
        kl = part["kl_mean"].to_numpy(np.float64)
        absolute[order] = float(np.trapezoid(kl, part["kept_connections"].to_numpy(np.float64)))
        relative[order] = float(np.trapezoid(kl, part["fraction"].to_numpy(np.float64)))
    return absolute, relative


def random_connections(
    kl: np.ndarray, random_kept: np.ndarray, random_kl: np.ndarray
) -> np.ndarray:
    """c_random(K) for each K of ``kl``: the fewest kept connections at which the random
    curve's lower monotone envelope reaches K, by linear interpolation (see the module
    docstring); NaN outside the envelope's range. ``random_kept`` ascends."""
    envelope = np.minimum.accumulate(np.asarray(random_kl, np.float64))
    kept = np.asarray(random_kept, np.float64)
    out = np.full(np.shape(kl), np.nan)
    for n, level in enumerate(np.asarray(kl, np.float64).ravel()):
        if not envelope[-1] <= level <= envelope[0]:
            continue
        first = int(np.argmax(envelope <= level))  # the first budget at or below the level
        if first == 0:
            out.flat[n] = kept[0]
            continue
        high, low = envelope[first - 1], envelope[first]  # high > level >= low
        share = (high - level) / (high - low)
        out.flat[n] = kept[first - 1] + share * (kept[first] - kept[first - 1])
    return out


def fewer_than_random(table: pd.DataFrame, order: str) -> float:
    """N: the median over ``order``'s interior budgets of c_random(K_order(m)) / (m k_out)
    (see the module docstring); NaN when no budget's KL lies in the random curve's range."""
    by = {name: part.sort_values("m_kept") for name, part in table.groupby("order")}
    curve, random = by[order], by["random"]
    interior = curve[(curve["m_kept"] > 0) & (curve["m_kept"] < curve["m_kept"].max())]
    needed = random_connections(
        interior["kl_mean"].to_numpy(),
        random["kept_connections"].to_numpy(),
        random["kl_mean"].to_numpy(),
    )
    ratio = needed / interior["kept_connections"].to_numpy(np.float64)
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if len(ratio) else math.nan


@dataclass(frozen=True)
class DownstreamKL:
    """The downstream KL of every (order, kept budget) variant over some ablated positions.

    Args:
        k_in, k_out: active input and output features per token.
        n_positions: the ablated positions the sums run over.
        kl_sums: [order][m_kept] the exact sum (``jsae.exact.exact_sum``) of KL(clean ||
            patched) over the positions, orders as ``KEEP_ORDERS``, m_kept = 0 .. k_in.
        per_position: the KL at each position, [positions, orders, m_kept] (None when not
            kept; ``merge`` concatenates it when both sides have it).
    """

    k_in: int
    k_out: int
    n_positions: int
    kl_sums: tuple[tuple[int, ...], ...]
    per_position: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, per_position: np.ndarray, k_out: int) -> DownstreamKL:
        """From the KL at each position, [positions, orders, k_in + 1]."""
        n, orders, m = per_position.shape
        if orders != len(KEEP_ORDERS):
            raise InputError(f"Expected {len(KEEP_ORDERS)} orders, got {orders}.")
        sums = tuple(
            tuple(exact_sum(per_position[:, o, b]) for b in range(m)) for o in range(orders)
        )
        return cls(m - 1, k_out, n, sums, per_position)

    def merge(self, other: DownstreamKL) -> DownstreamKL:
        """Both results' positions together; the sums add exactly."""
        if (self.k_in, self.k_out) != (other.k_in, other.k_out):
            raise InputError("Downstream KL results of different k cannot be merged.")
        sums = tuple(
            tuple(a + b for a, b in zip(mine, theirs, strict=True))
            for mine, theirs in zip(self.kl_sums, other.kl_sums, strict=True)
        )
        both = self.per_position is not None and other.per_position is not None
        per_position = np.concatenate([self.per_position, other.per_position]) if both else None
        return DownstreamKL(
            self.k_in, self.k_out, self.n_positions + other.n_positions, sums, per_position
        )

    @property
    def table(self) -> pd.DataFrame:
        """``DOWNSTREAM_COLUMNS``: each order's mean KL against its kept budget."""
        n = self.n_positions
        rows = [
            (order, m, m * self.k_out, m / self.k_in, n, exact_value(self.kl_sums[o][m]),
             exact_value(self.kl_sums[o][m], n) if n else math.nan)
            for o, order in enumerate(KEEP_ORDERS)
            for m in range(self.k_in + 1)
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=list(DOWNSTREAM_COLUMNS))

    @property
    def area(self) -> dict[str, float]:
        """Per order, the area under mean KL against kept connections per token."""
        return kl_areas(self.table)[0]

    @property
    def relative_area(self) -> dict[str, float]:
        """Per order, the area against kept connections / (k_in k_out)."""
        return kl_areas(self.table)[1]

    @property
    def fewer_than_random(self) -> dict[str, float]:
        """Per non-random order, N× fewer connections than random at equal KL."""
        table = self.table
        return {o: fewer_than_random(table, o) for o in KEEP_ORDERS if o != "random"}

    def summary(self) -> pd.DataFrame:
        """``jsae.analysis.effect.SUMMARY_COLUMNS`` rows: the areas and N× per order."""
        table, dense = self.table, self.k_in * self.k_out
        absolute, relative = kl_areas(table)
        fewer = self.fewer_than_random
        keeps = {
            "jacobian": "its inputs with the largest |J|",
            "oracle": "its inputs with the largest single-connection |diff|",
            "random": "random inputs",
        }
        none_kept = table[table["m_kept"] == 0]["kl_mean"].iloc[0]
        rows = [
            ("downstream_positions", self.n_positions,
             "Ablated positions the next-token KL divergences are averaged over."),
            ("downstream_kl_none_kept", none_kept,
             "Mean KL(clean ‖ patched) of the next-token distribution when every output "
             "feature loses all its inputs together."),
        ]  # fmt: skip
        for order in KEEP_ORDERS:
            lead = f"Each output feature keeping only {keeps[order]}"
            rows += [
                (f"downstream_kl_area_{order}", absolute[order],
                 f"{lead}: area under mean KL(clean ‖ patched) against kept connections per "
                 f"token (0 .. {dense}); smaller is sparser."),
                (f"downstream_kl_relative_area_{order}", relative[order],
                 f"{lead}: the same area against kept connections / {dense} (0 .. 1)."),
            ]  # fmt: skip
            if order in fewer:
                rows.append(
                    (f"downstream_fewer_than_random_{order}", fewer[order],
                     f"{lead}: median over budgets of how many times more connections random "
                     "inputs need for the same KL (2 = half as many; below 1 = worse).")
                )  # fmt: skip
        return pd.DataFrame(
            [(name, float(value), *NAN_CI, text) for name, value, text in rows],
            columns=list(SUMMARY_COLUMNS),
        )
