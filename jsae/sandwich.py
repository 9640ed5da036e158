"""The MLP sandwich: block L's MLP between a JSAE pair, and its Jacobian.

For one token with MLP input x, input-SAE activations a (active set I) and output-SAE
pre-activations z (active set O), the Jacobian of z_j with respect to a_i is

    J[j, i] = sum_m (W_dec_in[i] @ W_in)[m] * act_fn'(pre[m]) * (W_out @ W_enc_out[:, j])[m]

where pre = x @ W_in + b_in. Only the k_out x k_in block of active features matters, so
J is ``[tokens, k_out, k_in]``. The MLP always reads the original x, never the input SAE's
reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.components.mlps.mlp import MLP

from jsae.errors import UnsupportedError
from jsae.pair import JSAEPair, sae_pre_activations, topk_encode
from jsae.prune import Pruner
from jsae.reselect import Perturbed, reselect_full

# Elementwise activation functions of TransformerLens whose derivative we take by autograd.
# "solu"/"solu_ln" mix the d_mlp units (softmax, LayerNorm) and are not elementwise.
ELEMENTWISE_ACTIVATIONS = (
    "relu",
    "gelu",
    "gelu_new",
    "gelu_fast",
    "gelu_pytorch_tanh",
    "silu",
    "relu2",
)


def get_mlp(model: HookedTransformer, layer: int) -> MLP:
    """Block ``layer``'s MLP, refused with a clear message if jsae cannot handle it."""
    mlp = model.blocks[layer].mlp
    cfg = model.cfg
    if cfg.gated_mlp or hasattr(mlp, "W_gate"):
        raise UnsupportedError(
            f"Layer {layer} has a gated MLP ({type(mlp).__name__}); jsae handles "
            "ungated MLPs (x -> act_fn(x W_in + b_in) W_out + b_out) only."
        )
    if type(mlp) is not MLP:
        raise UnsupportedError(
            f"Layer {layer}'s MLP is a {type(mlp).__name__}; jsae handles TransformerLens's "
            "plain MLP only (no mixture of experts, no quantised weights)."
        )
    if cfg.act_fn not in ELEMENTWISE_ACTIVATIONS:
        raise UnsupportedError(
            f"The model's activation function {cfg.act_fn!r} is not supported; jsae supports "
            f"{', '.join(ELEMENTWISE_ACTIVATIONS)}."
        )
    return mlp


def _addmm(
    bias: Float[Tensor, " n"],
    x: Float[Tensor, "... m"],
    weight: Float[Tensor, "m n"],
    out: Float[Tensor, "rows n"] | None = None,
) -> Float[Tensor, "... n"]:
    """x @ weight + bias as one fused matmul (as TransformerLens's MLP computes it), with no
    separate [..., n] product before the bias is added."""
    rows = x.reshape(-1, x.shape[-1])
    result = torch.addmm(bias, rows, weight, out=out)
    return result.view(*x.shape[:-1], weight.shape[-1])


@dataclass
class MLPWeights:
    """Block L's MLP as plain tensors: x -> act_fn(x @ W_in + b_in) @ W_out + b_out.

    Args:
        W_in, b_in, W_out, b_out: the MLP's parameters (TransformerLens layout).
        act_fn: the model's elementwise activation function.
    """

    W_in: Float[Tensor, "d_model d_mlp"]
    b_in: Float[Tensor, " d_mlp"]
    W_out: Float[Tensor, "d_mlp d_model"]
    b_out: Float[Tensor, " d_model"]
    act_fn: object

    @classmethod
    def from_model(cls, model: HookedTransformer, layer: int) -> MLPWeights:
        mlp = get_mlp(model, layer)
        return cls(
            mlp.W_in.detach(),
            mlp.b_in.detach(),
            mlp.W_out.detach(),
            mlp.b_out.detach(),
            mlp.act_fn,
        )

    def pre(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_mlp"]:
        return _addmm(self.b_in, x, self.W_in)

    def out_from_pre(self, pre: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_model"]:
        return _addmm(self.b_out, self.act_fn(pre), self.W_out)

    def act_grad(self, pre: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_mlp"]:
        """act_fn'(pre), elementwise, by autograd through the model's own act_fn."""
        with torch.enable_grad():
            p = pre.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.act_fn(p).sum(), p)
        return grad

    def __call__(
        self, x: Float[Tensor, "... d_model"]
    ) -> tuple[Float[Tensor, "... d_model"], Float[Tensor, "... d_mlp"]]:
        """The sandwich's filling: x -> (mlp_out, act_fn'(pre))."""
        pre = self.pre(x)
        return self.out_from_pre(pre), self.act_grad(pre)


def active_jacobian(
    in_rows: Float[Tensor, "tokens k_in d_mlp"],
    act_grad: Float[Tensor, "tokens d_mlp"],
    out_rows: Float[Tensor, "tokens k_out d_mlp"],
) -> Float[Tensor, "tokens k_out k_in"]:
    """J[t, j, i] = sum_m out_rows[t, j, m] * act_grad[t, m] * in_rows[t, i, m].

    ``in_rows[t, i]`` is W_dec_in[in_idx[t, i]] @ W_in and ``out_rows[t, j]`` is
    (W_out @ W_enc_out)[:, out_idx[t, j]]. Differentiable in all three arguments.
    """
    return einops.einsum(
        out_rows * act_grad[:, None, :],
        in_rows,
        "tokens k_out d_mlp, tokens k_in d_mlp -> tokens k_out k_in",
    )


def jacobian_products(
    pair: JSAEPair, mlp: MLPWeights
) -> tuple[Float[Tensor, "d_sae_in d_mlp"], Float[Tensor, "d_sae_out d_mlp"]]:
    """``W_dec_in @ W_in`` and ``(W_out @ W_enc_out).T``: the rows ``active_jacobian`` gathers.

    The second is computed in that layout (``W_enc_out.T @ W_out.T``): no transposed copy to
    make. Differentiable in the SAEs' weights: ``Sandwich`` calls it under ``no_grad`` once,
    the training loss on every step."""
    return pair.sae_in.W_dec @ mlp.W_in, pair.sae_out.W_enc.T @ mlp.W_out.T


JACOBIAN_BLOCK_BYTES = 64 << 20
"""The Jacobian's gathered weight rows are built for this many bytes of tokens at a time
(about 85 tokens at the research shapes): a bounded footprint in few, large operations."""


@dataclass
class SandwichOutput:
    """Everything one unperturbed pass through the sandwich gives, per token.

    Args:
        x: the MLP input.
        in_act, in_idx: the input SAE's k active features (activation, index), largest first.
        pre: the MLP pre-activations; act_grad: act_fn'(pre).
        mlp_out: the MLP output; out_act, out_idx: the output SAE's k active features.
        out_pre: those features' pre-activations (out_act is their ReLU).
        runner_up: the best inactive feature's pre-activation, the (k+1)-th largest (-inf
            when every feature is active): out_pre - runner_up is each active feature's
            margin, how far it is from being displaced from the top k.
        jacobian: J[t, j, i] = d out_pre[t, j] / d in_act[t, i].
    """

    x: Float[Tensor, "tokens d_model"]
    in_act: Float[Tensor, "tokens k_in"]
    in_idx: Int[Tensor, "tokens k_in"]
    pre: Float[Tensor, "tokens d_mlp"]
    act_grad: Float[Tensor, "tokens d_mlp"]
    mlp_out: Float[Tensor, "tokens d_model"]
    out_act: Float[Tensor, "tokens k_out"]
    out_idx: Int[Tensor, "tokens k_out"]
    out_pre: Float[Tensor, "tokens k_out"]
    runner_up: Float[Tensor, " tokens"]
    jacobian: Float[Tensor, "tokens k_out k_in"]


class Sandwich:
    """Block L's MLP between a JSAE pair, with the Jacobian's weight products precomputed.

    ``dec_in_W_in = W_dec_in @ W_in`` ([d_sae_in, d_mlp]) and
    ``enc_out_W_out = (W_out @ W_enc_out).T`` ([d_sae_out, d_mlp], rows gathered per token)
    are computed once, so a token's Jacobian costs two gathers and one batched matmul.

    Args:
        model, pair: the model and the JSAE pair around its block ``pair.layer``'s MLP.
        prune: re-select the single-connection rows' top k (``perturbed_out_acts``) by
            certified pruning (``jsae.prune``) in the blocks where a sampled estimate of its
            candidate count says it pays, else by the full scan; the results are the same.
            False: always the full scan (the brute-force reference).
        prune_joint: the same for joint rows (``jointly_perturbed_out_acts``, the low-rank
            bound); off by default: it has no cheap probe, and measured 0.48–1.10× the full
            scan's time (1 thread; slower on every pair with 2 oversubscribed threads), so it
            can lose more than the 5% the default may (benchmarks/RESULTS.md).
    """

    def __init__(
        self,
        model: HookedTransformer,
        pair: JSAEPair,
        prune: bool = True,
        prune_joint: bool = False,
    ):
        pair.check_model(model)
        pair.fit_to(model)  # the model's device and dtype (a bf16 pair on an fp32 model)
        self.pair = pair
        self.mlp = MLPWeights.from_model(model, pair.layer)
        with torch.no_grad():
            self.dec_in_W_in, self.enc_out_W_out = jacobian_products(pair, self.mlp)
            # The output SAE reads mlp_out - b_dec (sae-lens's apply_b_dec_to_input): folded
            # into b_out once, so that out_pre_from_pre is two fused matmuls and nothing else.
            sae_out = pair.sae_out
            self.b_out_centered: Float[Tensor, " d_model"] = (
                self.mlp.b_out - sae_out.b_dec.detach() * sae_out.cfg.apply_b_dec_to_input
            )
            self.pruner = Pruner(sae_out) if prune or prune_joint else None
        self.prune, self.prune_joint = prune, prune_joint

    def prunes(self, joint: bool = False) -> bool:
        """Whether the single-connection (or ``joint``) rows' re-selection may be pruned:
        their blocks then hold ``jsae.prune_policy.prune_row_bytes`` more per row."""
        return self.prune_joint if joint else self.prune

    def out_pre_from_pre(
        self,
        pre: Float[Tensor, "... d_mlp"],
        out: Float[Tensor, "rows d_sae_out"] | None = None,
    ) -> Float[Tensor, "... d_sae_out"]:
        """From MLP pre-activations straight to the output SAE's pre-activations of all its
        features, as ``TopKSAE.encode`` computes them from ``mlp.out_from_pre(pre)``, written
        into ``out`` (rows of pre x d_sae_out) when given."""
        sae = self.pair.sae_out
        return _addmm(sae.b_enc.detach(), self.sae_in_from_pre(pre), sae.W_enc.detach(), out=out)

    def sae_in_from_pre(self, pre: Float[Tensor, "... d_mlp"]) -> Float[Tensor, "... d_model"]:
        """What the output SAE's encoder multiplies: mlp_out - b_dec (``process_sae_in``),
        from the MLP pre-activations."""
        sae_in = _addmm(self.b_out_centered, self.mlp.act_fn(pre), self.mlp.W_out)
        return sae_in.to(self.pair.sae_out.dtype)

    @torch.no_grad()
    def perturbed_out_acts(
        self,
        pre: Float[Tensor, "tokens d_mlp"],
        in_idx: Int[Tensor, "tokens rows"],
        s: Float[Tensor, "tokens rows"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae_out"] | None = None,
        out: Perturbed | None = None,
    ) -> Perturbed:
        """Perturb each token's MLP input along input features ``in_idx`` by steps ``s``,
        x' = x - s * W_dec_in[i] (one row per token and feature), and read the output SAE on
        every row for the token's ``out_idx`` features, with top-k re-selection: a feature
        that is not among the row's k_out largest pre-activations reads 0, as
        ``TopKSAE.encode`` gives it. Also returns their un-gated pre-activations, which of
        them left the top k, and which feature entered it (see ``Perturbed``).

        ``pre`` are the tokens' unperturbed MLP pre-activations. The rows' output-SAE
        pre-activations of all features go into ``buffer`` (tokens * rows x d_sae_out) when
        given, so that a caller running many blocks reuses one; the results into ``out``.
        """
        tokens, rows = in_idx.shape
        d_mlp = pre.shape[-1]
        # pre(x - s W_dec_in[i]) = pre(x) - s (W_dec_in @ W_in)[i]: a gather, no W_in matmul
        row_pre = self.dec_in_W_in.index_select(0, in_idx.reshape(-1)).view(tokens, rows, d_mlp)
        torch.addcmul(pre[:, None, :], row_pre, s[:, :, None], value=-1, out=row_pre)
        return self._reselect(row_pre, pre, out_idx, buffer, out, joint=False)

    @torch.no_grad()
    def jointly_perturbed_out_acts(
        self,
        pre: Float[Tensor, "tokens d_mlp"],
        in_idx: Int[Tensor, "tokens k_in"],
        steps: Float[Tensor, "tokens rows k_in"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae_out"] | None = None,
        out: Perturbed | None = None,
    ) -> Perturbed:
        """Like ``perturbed_out_acts``, but each row moves several input features together:
        x' = x - sum_i steps[t, r, i] * W_dec_in[in_idx[t, i]] (a step of 0 leaves feature i
        alone), so a row removes a whole set of the token's active inputs at once."""
        tokens, rows, k_in = steps.shape
        d_mlp = pre.shape[-1]
        in_rows = self.dec_in_W_in.index_select(0, in_idx.reshape(-1)).view(tokens, k_in, d_mlp)
        # pre(x') = pre(x) - steps @ (W_dec_in @ W_in)[in_idx]: one batched matmul, no W_in
        row_pre = torch.baddbmm(
            pre[:, None, :].expand(tokens, rows, d_mlp), steps, in_rows, alpha=-1
        )
        return self._reselect(row_pre, pre, out_idx, buffer, out, joint=True)

    def _reselect(
        self,
        row_pre: Float[Tensor, "tokens rows d_mlp"],
        pre: Float[Tensor, "tokens d_mlp"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae_out"] | None,
        out: Perturbed | None,
        joint: bool,
    ) -> Perturbed:
        """The rows' MLP pre-activations through the rest of the MLP and the output SAE, with
        top-k re-selection, read at each token's ``out_idx`` features (see ``Perturbed``).

        ``pre`` are the tokens' unperturbed MLP pre-activations (the pruned re-selection
        bounds each row's change from them); ``joint``: the rows are joint rows."""
        tokens, rows, _ = row_pre.shape
        k = self.pair.k_out
        if self.pruner is None or not self.prunes(joint):
            sae_pre = self.out_pre_from_pre(row_pre, out=buffer).view(tokens, rows, -1)
            return reselect_full(sae_pre, out_idx, k, out)
        y_rows = self.sae_in_from_pre(row_pre)
        y_tok = self.sae_in_from_pre(pre)
        return self.pruner.reselect(y_rows, y_tok, out_idx, buffer, out)

    @torch.no_grad()
    def __call__(self, x: Float[Tensor, "tokens d_model"]) -> SandwichOutput:
        in_act, in_idx = topk_encode(self.pair.sae_in, x)
        pre = self.mlp.pre(x)
        act_grad = self.mlp.act_grad(pre)
        mlp_out = self.mlp.out_from_pre(pre)
        k_out = self.pair.k_out
        # The top k + 1 pre-activations: the first k are topk_encode's (same order), the
        # last one is the runner-up every active feature's margin is measured against
        out_pre_all = sae_pre_activations(self.pair.sae_out, mlp_out)
        values, indices = torch.topk(out_pre_all, k=min(k_out + 1, out_pre_all.shape[-1]), dim=-1)
        out_pre, out_idx = values[:, :k_out], indices[:, :k_out]
        runner_up = (
            values[:, k_out]
            if values.shape[-1] > k_out
            else torch.full_like(values[:, 0], -torch.inf)
        )
        jacobian = self.jacobian(in_idx, act_grad, out_idx)
        return SandwichOutput(
            x,
            in_act,
            in_idx,
            pre,
            act_grad,
            mlp_out,
            out_pre.relu(),
            out_idx,
            out_pre,
            runner_up,
            jacobian,
        )

    def jacobian(
        self,
        in_idx: Int[Tensor, "tokens k_in"],
        act_grad: Float[Tensor, "tokens d_mlp"],
        out_idx: Int[Tensor, "tokens k_out"],
    ) -> Float[Tensor, "tokens k_out k_in"]:
        """``active_jacobian`` over blocks of tokens, so that the gathered weight rows
        ((k_in + k_out) x d_mlp floats per token) never take more than JACOBIAN_BLOCK_BYTES."""
        n, k_in = in_idx.shape
        k_out, d_mlp = out_idx.shape[1], act_grad.shape[-1]
        per_token = 4 * (k_in + 2 * k_out) * d_mlp
        step = max(1, JACOBIAN_BLOCK_BYTES // per_token)
        jacobian = act_grad.new_empty(n, k_out, k_in)
        for t0 in range(0, n, step):
            t = slice(t0, t0 + step)
            in_rows = self.dec_in_W_in.index_select(0, in_idx[t].reshape(-1))
            out_rows = self.enc_out_W_out.index_select(0, out_idx[t].reshape(-1))
            rows = len(in_idx[t])
            jacobian[t] = active_jacobian(
                in_rows.view(rows, k_in, d_mlp), act_grad[t], out_rows.view(rows, k_out, d_mlp)
            )
        return jacobian
