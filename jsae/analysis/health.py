"""Pair health: how degenerate a pair's output code is, and so whether the ε-split check means anything.

The causal check perturbs an input feature and reads the change ``diff`` of each active output
activation, with top-k re-selection. The Jacobian only sees the continuous part of that change.
When a token's k active output activations are nearly equal (a *flat*, near-binary code) and the
best inactive feature is only just below them (tiny *margins*), information rides on *which*
features are selected, and a perturbation moves outputs mostly by swapping features out of the
top k, which no Jacobian entry predicts. These statistics say how far a pair is in that regime.

For tokens t with output-SAE pre-activations z_t (all features, sorted z_t(1) ≥ z_t(2) ≥ ...),
the k selected output features are the top k, their activations a_tj = ReLU(z_t(j)); a selected
feature *fires* when a_tj > 0.

* ``output_cv`` = median over tokens of std(a_t) / mean(a_t) over the firing features of token t
  (population std; tokens with fewer than two firing features are left out); ``input_cv`` the
  same for the input SAE.
* ``ev_out`` = 1 - Σ_t ||y_t - ŷ_t||² / Σ_t ||y_t - ȳ||² of the output SAE's reconstruction ŷ of
  the MLP output y (:func:`jsae.train.explained_variance`). ``binary_ev_out`` is the same with
  each token's firing activations replaced by their mean before decoding (only *which* features
  fire is kept); ``binary_share`` = binary_ev_out / ev_out.
* margin_tj = z_t(j) - z_t(k+1) for each selected j: how far j is above the best inactive
  feature, i.e. how much j must fall (or the best inactive feature rise) for j to be displaced.
  ``margin_median``, ``margin_q10`` (10th percentile), ``margin_relative`` = median margin /
  median selected activation a_tj, and ``near_displacement`` = share of selected (t, j) with
  margin_tj < TINY_MARGIN · median a_tj.
* ``unfired_in`` / ``unfired_out``: share of each SAE's features that fire on none of the tokens.
  This is a statement about *these* tokens: on a prompt of a few dozen tokens most features
  never fire. The bundle's ``metrics.json`` carries the held-out one (``measure_bundle``).

Medians and quantiles are numpy's (the mean of the two middle values; linear interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from jsae.errors import InputError
from jsae.pair import sae_pre_activations, topk_encode
from jsae.sandwich import Sandwich
from jsae.train.losses import decode_topk, fvu
from jsae.train.metrics import explained_variance, total_variance

FLAT_CV = 0.1
"""Below this median within-token CV of the firing output activations the output code is flat
(near-binary). Our bundled JSAEs measure 0.02-0.04 on held-out text, their plain pairs
0.55-0.64 (issue 11: JSAE 0.03-0.05 vs plain 0.6): 0.1 lies far from both."""
TINY_MARGIN = 0.1
"""A margin below this fraction of the median selected output activation is within reach of
displacement: a change that small in j's or the best inactive feature's pre-activation swaps j
out of the top k. When the *median* margin is below it (``margin_relative < TINY_MARGIN``),
half the selected outputs are that close. Our bundled JSAEs' median margins are 0.02-0.04 of
their median activation (0.04-0.08 absolute), their plain pairs' 0.37-0.43 (0.3-1.7 absolute):
80-97% versus 20-23% of the selected outputs lie within 0.1."""
UNFIRED_OUT = 0.3
"""More than this share of output features silent on a sample where an average feature would
fire MIN_EXPECTED_FIRINGS times or more: the output code uses a small part of its dictionary.
On the bundle's held-out sample (about 4,000 tokens) the plain pairs leave 0.09-0.25 unfired,
the JSAEs 0.43-0.63."""
MIN_EXPECTED_FIRINGS = 20.0
"""The unfired warning needs tokens · k / d_sae (how often a feature firing at the average
rate would fire) at least this large: on fewer tokens a silent feature says nothing."""
QUANTILE = 0.1
"""The low quantile of the margins reported as ``margin_q10``."""

DESCRIPTIONS = {
    "tokens": "tokens measured",
    "output_cv": "median within-token CV (std/mean) of the firing output activations",
    "input_cv": "median within-token CV (std/mean) of the firing input activations",
    "ev_out": "explained variance of the output SAE's reconstruction of the MLP output",
    "binary_ev_out": "explained variance when each token's firing output values are set to "
    "their mean (only which features fire is kept)",
    "binary_share": "binary_ev_out / ev_out: share of the reconstruction that survives "
    "keeping only which features fire",
    "margin_median": "median margin: selected output pre-activation minus the best inactive one",
    "margin_q10": "10th percentile of the margins",
    "margin_relative": "median margin / median selected output activation",
    "near_displacement": f"share of selected outputs whose margin is below {TINY_MARGIN:g} x "
    "the median selected output activation",
    "unfired_in": "share of input features that fire on none of these tokens",
    "unfired_out": "share of output features that fire on none of these tokens",
}
"""What each statistic of ``PairHealth.summary()`` is, in one line."""


@dataclass(frozen=True)
class PairHealth:
    """How degenerate a pair's codes are on some tokens (see the module docstring for each
    statistic). ``warnings`` holds one plain sentence per problem for the causal check."""

    tokens: int
    output_cv: float
    input_cv: float
    ev_out: float
    binary_ev_out: float
    binary_share: float
    margin_median: float
    margin_q10: float
    margin_relative: float
    near_displacement: float
    unfired_in: float
    unfired_out: float
    warnings: tuple[str, ...]

    @property
    def flat(self) -> bool:
        """The output code is flat (:func:`is_flat`)."""
        return is_flat(self.output_cv)

    @property
    def tiny_margins(self) -> bool:
        """Half the selected outputs are within reach of displacement (:func:`is_tiny_margin`)."""
        return is_tiny_margin(self.margin_relative)

    def summary(self) -> pd.DataFrame:
        """One row per statistic: statistic, value, description."""
        return pd.DataFrame(
            {
                "statistic": list(DESCRIPTIONS),
                "value": [float(getattr(self, name)) for name in DESCRIPTIONS],
                "description": list(DESCRIPTIONS.values()),
            }
        )


def is_flat(output_cv: float) -> bool:
    """The one rule for a flat output code: ``output_cv < FLAT_CV``."""
    return output_cv < FLAT_CV


def is_tiny_margin(margin_relative: float) -> bool:
    """The one rule for tiny margins: ``margin_relative < TINY_MARGIN``."""
    return margin_relative < TINY_MARGIN


@torch.no_grad()
def pair_health(
    sandwich: Sandwich,
    x: Float[Tensor, "tokens d_model"],
    y: Float[Tensor, "tokens d_model"] | None = None,
) -> PairHealth:
    """The health of ``sandwich``'s pair on MLP inputs ``x`` (the caller leaves BOS out) and
    the model's MLP outputs ``y`` (default: the sandwich's MLP applied to ``x``)."""
    if x.ndim != 2 or len(x) == 0:
        raise InputError("Pair health needs MLP inputs of at least one token, [tokens, d_model].")
    pair = sandwich.pair
    if y is None:
        y = sandwich.mlp.out_from_pre(sandwich.mlp.pre(x))
    k, d_sae = pair.k_out, pair.d_sae_out
    # as topk_encode and the engine's SandwichOutput compute them: the same top k, and the
    # engine's runner_up (the best inactive pre-activation, the (k+1)-th largest)
    pre = sae_pre_activations(pair.sae_out, y)
    top, out_idx = torch.topk(pre, k=min(k + 1, d_sae), dim=-1, sorted=True)
    selected = top[:, :k]
    out_act = selected.relu()
    if k < d_sae:
        margin = (selected - top[:, k:]).double().numpy(force=True).ravel()
    else:  # every feature is selected: nothing can displace one
        margin = np.full(selected.numel(), np.inf)
    in_act, in_idx = topk_encode(pair.sae_in, x)

    ev_out = explained_variance(pair.sae_out, y)
    binary_ev_out = _binary_ev(sandwich, y, out_act, out_idx[:, :k])
    scale = float(np.median(out_act.double().numpy(force=True)))
    margin_median = float(np.median(margin))
    stats = {
        "tokens": len(x),
        "output_cv": median_cv(out_act),
        "input_cv": median_cv(in_act),
        "ev_out": ev_out,
        "binary_ev_out": binary_ev_out,
        "binary_share": binary_ev_out / ev_out if ev_out > 0 else float("nan"),
        "margin_median": margin_median,
        "margin_q10": float(np.quantile(margin, QUANTILE)),
        "margin_relative": margin_median / scale if scale > 0 else float("nan"),
        "near_displacement": float(np.mean(margin < TINY_MARGIN * scale)),
        "unfired_in": unfired_share(in_act, in_idx, pair.d_sae_in),
        "unfired_out": unfired_share(out_act, out_idx[:, :k], d_sae),
    }
    expected_firings = len(x) * k / d_sae
    return PairHealth(**stats, warnings=_warnings(stats, expected_firings))


def median_cv(act: Float[Tensor, "tokens k"]) -> float:
    """Median over tokens of std/mean of each token's firing (> 0) activations; tokens with
    fewer than two firing features are left out (nan when no token is left)."""
    act = act.double().numpy(force=True)
    firing = act > 0
    n = firing.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = act.sum(-1) / n  # non-firing entries are 0: the sum is over firing ones
        var = (np.where(firing, act - mean[:, None], 0.0) ** 2).sum(-1) / n
        cv = np.sqrt(var) / mean
    cv = cv[n >= 2]
    return float(np.median(cv)) if len(cv) else float("nan")


def unfired_share(act: Tensor, idx: Tensor, d_sae: int) -> float:
    """Share of ``d_sae`` features that fire (activation > 0) on none of the tokens."""
    fired = torch.zeros(d_sae, dtype=torch.bool, device=idx.device)
    fired[idx[act > 0]] = True
    return float((~fired).double().mean())


def _binary_ev(sandwich: Sandwich, y: Tensor, out_act: Tensor, out_idx: Tensor) -> float:
    """Explained variance of y when each token's firing output activations are replaced by
    their mean (non-firing selected features stay 0)."""
    firing = out_act > 0
    n = firing.sum(-1, keepdim=True).clamp_min(1)
    mean = out_act.sum(-1, keepdim=True) / n
    binary = torch.where(firing, mean, torch.zeros_like(out_act))
    y = y.float()
    recon = decode_topk(sandwich.pair.sae_out, binary.float(), out_idx)
    return float(1 - fvu(y - recon, total_variance(y)))


def _warnings(stats: dict[str, float], expected_firings: float) -> tuple[str, ...]:
    """One plain sentence per problem the statistics show for the causal check."""
    found = []
    if is_flat(stats["output_cv"]):
        found.append(
            "The output code is flat: a token's active output features have nearly equal "
            f"activations (median CV {stats['output_cv']:.2f}; keeping only which features "
            f"fire keeps {stats['binary_share']:.0%} of the explained variance), so "
            "information rides on which features are selected; perturbations move outputs "
            "mostly by swapping features out of the top k, which no Jacobian entry sees."
        )
    if is_tiny_margin(stats["margin_relative"]):
        found.append(
            "Margins are tiny: the median active output feature lies above the best "
            f"inactive one by only {stats['margin_relative']:.2f} of a typical active "
            f"activation, and {stats['near_displacement']:.0%} of active outputs by less than "
            f"{TINY_MARGIN:g} of one, so small perturbations push output features out of the "
            "top k; the diff of an unimportant connection (|J| ≤ ε) then measures these exits, "
            "which no derivative predicts, rather than the continuous change the Jacobian "
            "describes."
        )
    if expected_firings >= MIN_EXPECTED_FIRINGS and stats["unfired_out"] > UNFIRED_OUT:
        found.append(
            f"{stats['unfired_out']:.0%} of the output SAE's features never fire on these "
            f"{stats['tokens']} tokens, where an average feature would fire about "
            f"{expected_firings:.0f} times: the output code uses a small part of its "
            "dictionary."
        )
    return tuple(found)
