"""The tokens an output feature's decoder direction promotes through the unembedding.

Output feature j writes ``a_j · W_dec_out[j]`` into the residual stream (``hook_mlp_out`` is
added to it). Its direct effect on the logits, per unit of activation, is read as
TransformerLens folds the final LayerNorm into the unembedding (``fold_ln``):

    effect_j = centre(W_dec_out[j]) @ (w_ln[:, None] * W_U)

``centre`` subtracts the mean over d_model (a LayerNorm centres its input; RMSNorm does not);
``w_ln`` is ``ln_final``'s gain (1 when the model has none, or when it is already folded into
``W_U``, as in ``LNPre``/``RMSPre``). Left out: the norm's 1/σ (one positive factor per token,
the same for every vocabulary entry, so it does not change the order), its bias and ``b_U``
(the same for every feature), the rest of the model after the layer (no logit lens through
later blocks), and ``center_unembed`` (it shifts every token's effect by the same amount).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer


def folded_unembed(model: HookedTransformer) -> Float[Tensor, "d_model d_vocab"]:
    """``W_U`` with ``ln_final``'s gain folded in (``w_ln[:, None] * W_U``)."""
    w_u = model.W_U.detach()
    gain = getattr(getattr(model, "ln_final", None), "w", None)
    return w_u if gain is None else gain.detach()[:, None] * w_u


def centres(model: HookedTransformer) -> bool:
    """Whether the final norm subtracts the mean (a LayerNorm, folded or not)."""
    return str(model.cfg.normalization_type or "").startswith("LN")


@torch.no_grad()
def logit_effects(
    model: HookedTransformer, directions: Float[Tensor, "n d_model"]
) -> Float[Tensor, "n d_vocab"]:
    """Each direction's direct effect on the logits per unit (the module docstring's)."""
    directions = directions.detach().to(model.W_U.dtype)
    if centres(model):
        directions = directions - directions.mean(dim=-1, keepdim=True)
    return directions @ folded_unembed(model)


@torch.no_grad()
def promoted_tokens(
    model: HookedTransformer, directions: Float[Tensor, "n d_model"], n: int, batch: int = 256
) -> tuple[Tensor, Tensor]:
    """The ``n`` tokens each direction promotes most, and their effects, largest first
    (``[n_dirs, n]`` each), computed ``batch`` directions at a time."""
    tokens, values = [], []
    n = min(n, model.cfg.d_vocab)
    for start in range(0, len(directions), batch):
        effect = logit_effects(model, directions[start : start + batch])
        top = torch.topk(effect, n, dim=-1, sorted=True)
        values.append(top.values.float().cpu())
        tokens.append(top.indices.cpu())
    return torch.cat(tokens), torch.cat(values)
