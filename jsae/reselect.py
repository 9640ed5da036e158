"""Top-k re-selection of perturbed rows: the output SAE's TopK read on each row.

A perturbed row's output-SAE pre-activations z'_r (all d_sae of them) give its new top k:
a tracked output feature j reads z'_rj when z'_rj is at least the k-th largest value and
positive (``TopKSAE.encode``'s top k, then ReLU), else 0. ``reselect_full`` scans every
feature; ``jsae.prune`` finds the same top k from fewer, certified candidates, and both read
the tracked features through ``read_tracked``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

LARGEST = torch.iinfo(torch.long).max


class Perturbed(NamedTuple):
    """What ``Sandwich.perturbed_out_acts`` reads on every perturbed row.

    Args:
        acts: the tracked output features' activations, top-k re-selected (0 when a feature
            is not among the row's k largest pre-activations, as ``TopKSAE.encode`` gives it).
        pre: their un-gated pre-activations (what J is the derivative of).
        exited: the tracked feature is no longer among the row's k largest.
        entered: the strongest feature now in the row's top k that is not among the tracked
            ones (of equal ones the lowest id; -1 when none entered).
    """

    acts: Float[Tensor, "tokens rows n"]
    pre: Float[Tensor, "tokens rows n"]
    exited: Bool[Tensor, "tokens rows n"]
    entered: Int[Tensor, "tokens rows"]


def read_tracked(
    new_pre: Float[Tensor, "tokens rows n"],
    top_values: Float[Tensor, "tokens rows k"],
    top_features: Int[Tensor, "tokens rows k"],
    out_idx: Int[Tensor, "tokens n"],
    out: Perturbed | None = None,
) -> Perturbed:
    """The tracked features' reading given each row's top k (values, feature ids) and their
    new pre-activations ``new_pre``, written into ``out`` when given.

    Membership of the new top k by its k-th largest value (ties have measure zero); a
    feature that left the top k reads 0, and max(kth, 0) also applies the ReLU."""
    kth = top_values.amin(-1, keepdim=True)
    exited = torch.lt(new_pre, kth, out=None if out is None else out.exited)
    zero = new_pre.new_zeros(())
    acts = torch.where(
        new_pre >= kth.clamp_min(0), new_pre, zero, out=None if out is None else out.acts
    )
    # The features that entered: top-k members that were not tracked; the strongest one, of
    # equal ones the lowest id (so that it depends on the values only, not on the order in
    # which a top k lists them)
    newcomer = (top_features[..., :, None] != out_idx[:, None, None, :]).all(-1)
    value = torch.where(newcomer, top_values, -torch.inf)
    best = value.argmax(-1, keepdim=True)
    strongest = top_features.gather(-1, best)[..., 0]
    tied = newcomer & (value == value.gather(-1, best))
    lowest = torch.where(tied, top_features, top_features.new_tensor(LARGEST)).amin(-1)
    strongest = torch.where(lowest < LARGEST, lowest, strongest)  # NaN: argmax's choice
    entered = torch.where(newcomer.any(-1), strongest, -1)
    if out is not None:
        if new_pre.data_ptr() != out.pre.data_ptr():
            out.pre.copy_(new_pre)
        out.entered.copy_(entered)
        return out
    return Perturbed(acts, new_pre, exited, entered)


def reselect_full(
    sae_pre: Float[Tensor, "tokens rows d_sae"],
    out_idx: Int[Tensor, "tokens n"],
    k: int,
    out: Perturbed | None = None,
) -> Perturbed:
    """The full scan: the rows' top k over every feature's pre-activation ``sae_pre``."""
    tokens, rows, _ = sae_pre.shape
    top = torch.topk(sae_pre, k=k, dim=-1, sorted=False)
    tracked = out_idx[:, None, :].expand(tokens, rows, out_idx.shape[-1])
    new_pre = torch.gather(sae_pre, -1, tracked, out=None if out is None else out.pre)
    return read_tracked(new_pre, top.values, top.indices, out_idx, out)
