"""A pair's training loss, term by term.

For a batch of T tokens with MLP input x and MLP output y (``d`` dimensions each)

    loss = R(x, SAE_in(x)) + R(y, SAE_out(y)) + λ · P(J)  (+ c · AuxK)

The reconstruction term R is, per objective (:mod:`jsae.train.config`):

* ``MSE(x, x̂) = Σ_t ||x_t - x̂_t||² / (T·d)``, the research code's ``F.mse_loss`` (every
  objective but ``fvu``), in the activations' own units;
* ``FVU(x, x̂) = Σ_t ||x_t - x̂_t||² / (T·Var(x))`` (``fvu``), the error as a fraction of the
  activations' total variance ``Var(x) = E||x - E[x]||²`` (fixed for a run, see
  :mod:`jsae.train.trainer`), so ``1 - FVU`` is the explained variance. The history logs the
  FVU whatever the objective.

``J[t, j, i]`` is the derivative of the output SAE's pre-activation of output feature j with
respect to the input SAE's activation of active feature i (:mod:`jsae.sandwich`), for the
k_out active output features plus, with ``below_threshold``, the next m below them. The
penalty P is ``Σ|J| / (T·k_out·k_in)`` (``mean|J|`` over the active block when m = 0), or
for ``normalized`` the mean over tokens of ``mean|J_t| / rms(J_t)``. J is
:func:`jsae.sandwich.active_jacobian` on rows of :func:`jsae.sandwich.jacobian_products`
computed from the SAEs' live weights, so gradients flow into W_dec_in and W_enc_out (never
through ``act_fn'`` or the top-k choice); ``act_fn'`` is evaluated on the *original* MLP
input and the output SAE reads the model's real MLP output (never the MLP of a
reconstruction), as in the research code. The SAEs' codes are
:func:`jsae.pair.topk_activations` of :func:`jsae.pair.sae_pre_activations`, exactly what the
pair computes at inference.

AuxK (Gao et al. 2024; the research code has none): the top ``aux_k`` *dead* features of each
SAE reconstruct its main reconstruction's error (held fixed), normalised like R (by Var for
the FVU, by d for the MSE), so dead features get gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from sae_lens import TopKSAE
from torch import Tensor

from jsae.pair import JSAEPair, sae_pre_activations, topk_activations
from jsae.sandwich import MLPWeights, active_jacobian, jacobian_products
from jsae.train.config import DEFAULT_OBJECTIVE

TERMS = ("loss", "fvu_in", "fvu_out", "aux", "jacobian_penalty")
"""The loss's terms as the history, W&B and checkpoints name them (``loss`` is the total)."""


def decode_directions(
    sae: TopKSAE, values: Float[Tensor, "tokens k"], indices: Int[Tensor, "tokens k"]
) -> Float[Tensor, "tokens d_in"]:
    """Σ_i values[t, i] · W_dec[indices[t, i]]: the sparse code's decoder directions only."""
    return torch.einsum("tk,tkd->td", values, sae.W_dec[indices])


def decode_topk(
    sae: TopKSAE, values: Float[Tensor, "tokens k"], indices: Int[Tensor, "tokens k"]
) -> Float[Tensor, "tokens d_in"]:
    """``sae.decode`` of the sparse code (values at indices), by gathering k decoder rows."""
    return decode_directions(sae, values, indices) + sae.b_dec


def fvu(err: Float[Tensor, "tokens d"], variance: float) -> Float[Tensor, ""]:
    """Fraction of variance unexplained: mean_t ||err_t||² / ``variance``."""
    return err.pow(2).sum(-1).mean() / variance


def mse(err: Float[Tensor, "tokens d"]) -> Float[Tensor, ""]:
    """The research code's reconstruction loss: the mean of err² over tokens and dimensions."""
    return err.pow(2).mean()


RMS_FLOOR = 1e-12
"""``normalized``: a token whose J is all zero has penalty 0, not 0/0."""


def aux_k_loss(
    sae: TopKSAE,
    pre: Float[Tensor, "tokens d_sae"],
    err: Float[Tensor, "tokens d_in"],
    dead: Tensor,
    aux_k: int,
) -> Float[Tensor, ""]:
    """Gao et al.'s AuxK: the top ``aux_k`` *dead* features reconstruct the main
    reconstruction's error (held fixed), so dead features get gradients and can revive."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return torch.zeros((), device=pre.device)
    masked = pre.masked_fill(~dead.to(pre.device), float("-inf"))
    values, indices = topk_activations(masked, min(aux_k, n_dead))
    return (decode_directions(sae, values, indices) - err.detach()).pow(2).sum(-1).mean()


def jacobian_penalty(
    pair: JSAEPair,
    mlp: MLPWeights,
    x: Float[Tensor, "tokens d_model"],
    in_idx: Int[Tensor, "tokens k_in"],
    out_idx: Int[Tensor, "tokens n_out"],
    *,
    normalized: bool = False,
) -> Float[Tensor, ""]:
    """The penalty P over the tokens of ``x`` (see the module docstring), differentiable in
    the SAEs' weights (not in x): ``Σ|J| / (T·k_out·k_in)`` over the rows ``out_idx`` (the
    k_out active output features first, then any below the threshold), or with ``normalized``
    the mean over tokens of ``mean|J_t| / rms(J_t)`` of the active block."""
    # act_fn' at the original MLP input, never at a reconstruction.
    act_grad = mlp.act_grad(mlp.pre(x))
    dec_in_W_in, enc_out_W_out = jacobian_products(pair, mlp)
    jacobian = active_jacobian(
        F.embedding(in_idx, dec_in_W_in),  # = dec_in_W_in[in_idx], with a faster backward
        act_grad,
        F.embedding(out_idx, enc_out_W_out),
    )
    if normalized:
        rms = jacobian.pow(2).mean((-2, -1)).sqrt().clamp_min(RMS_FLOOR)
        return (jacobian.abs().mean((-2, -1)) / rms).mean()
    # Σ|J| / (T·k_out·k_in): rows below the threshold add to the active block's mean |J|
    return jacobian.abs().mean() * (out_idx.shape[-1] / pair.k_out)


@dataclass
class PairLoss:
    """One batch's loss terms (tensors, so the total can be back-propagated) and the codes
    they were computed from (the trainer counts firing features with them).

    ``jacobian_penalty`` is None on the steps that did not compute it (λ = 0 off logging).
    """

    total: Tensor
    fvu_in: Tensor
    fvu_out: Tensor
    jacobian_penalty: Tensor | None
    aux: Tensor
    in_idx: Int[Tensor, "tokens k_in"]
    out_idx: Int[Tensor, "tokens k_out"]
    in_act: Float[Tensor, "tokens k_in"]
    out_act: Float[Tensor, "tokens k_out"]

    def terms(self) -> dict[str, Tensor]:
        """The terms by their ``TERMS`` names (``jacobian_penalty`` only when computed)."""
        terms = {
            "loss": self.total,
            "fvu_in": self.fvu_in,
            "fvu_out": self.fvu_out,
            "aux": self.aux,
        }
        if self.jacobian_penalty is not None:
            terms["jacobian_penalty"] = self.jacobian_penalty
        return terms


def pair_loss(
    pair: JSAEPair,
    mlp: MLPWeights,
    x: Float[Tensor, "tokens d_model"],
    y: Float[Tensor, "tokens d_model"],
    variance_in: float,
    variance_out: float,
    jacobian_coefficient: float,
    jacobian_tokens: int | None = None,
    with_penalty: bool = True,
    dead: tuple[Tensor, Tensor] | None = None,
    aux_k: int = 0,
    aux_coefficient: float = 0.0,
    objective: str = DEFAULT_OBJECTIVE,
    below_threshold: int = 0,
) -> PairLoss:
    """R_in + R_out + λ · P for MLP inputs ``x`` and the model's MLP outputs ``y``, R and P as
    ``objective`` says (see the module docstring; ``below_threshold`` is m).

    The penalty is averaged over the first ``jacobian_tokens`` tokens of the batch (all when
    None; the batch is shuffled). With λ = 0 it is computed without gradients, and only if
    ``with_penalty``. With ``aux_k`` and the ``dead`` masks of both SAEs, ``aux_coefficient``
    times the AuxK losses (each normalised like its reconstruction term) is added.
    """
    in_pre = sae_pre_activations(pair.sae_in, x)
    out_pre = sae_pre_activations(pair.sae_out, y)
    in_act, in_idx = topk_activations(in_pre, pair.k_in)
    out_act, out_idx = topk_activations(out_pre, pair.k_out)
    in_err = x - decode_topk(pair.sae_in, in_act, in_idx)
    out_err = y - decode_topk(pair.sae_out, out_act, out_idx)
    fvu_in = fvu(in_err, variance_in)
    fvu_out = fvu(out_err, variance_out)
    total = fvu_in + fvu_out if objective == "fvu" else mse(in_err) + mse(out_err)
    aux = torch.zeros(())
    if aux_k and dead is not None:
        for sae, pre, err, mask, variance in (
            (pair.sae_in, in_pre, in_err, dead[0], variance_in),
            (pair.sae_out, out_pre, out_err, dead[1], variance_out),
        ):
            # normalised like the reconstruction term: by Var for the FVU, by d for the MSE
            scale = variance if objective == "fvu" else err.shape[-1]
            aux = aux + aux_k_loss(sae, pre, err, mask, aux_k) / scale
        total = total + aux_coefficient * aux
    penalty = None
    if jacobian_coefficient > 0 or with_penalty:
        n = len(x) if jacobian_tokens is None else min(jacobian_tokens, len(x))
        rows = out_idx[:n]
        if below_threshold:
            # the top k_out + m, so the active k_out come first (the top-k choice has no gradient)
            rows = out_pre[:n].detach().topk(pair.k_out + below_threshold, dim=-1).indices
        with torch.set_grad_enabled(torch.is_grad_enabled() and jacobian_coefficient > 0):
            penalty = jacobian_penalty(
                pair, mlp, x[:n], in_idx[:n], rows, normalized=objective == "normalized"
            )
        if jacobian_coefficient > 0:
            total = total + jacobian_coefficient * penalty
    return PairLoss(total, fvu_in, fvu_out, penalty, aux, in_idx, out_idx, in_act, out_act)
