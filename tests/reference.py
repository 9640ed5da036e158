"""Independent references the engine is checked against: slow, obvious, and built only on
TransformerLens's MLP module and sae-lens's ``encode``."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from jsae.pair import JSAEPair


@torch.no_grad()
def notebook_loop(
    model: HookedTransformer,
    pair: JSAEPair,
    x: torch.Tensor,
    mode: str = "unit",
    scale: float = 1.0,
) -> dict[tuple[int, int, int], float]:
    """The research notebook's loop: one MLP + output-SAE run per (token, in, out) connection.

    Returns {(token, in_feature, out_feature): diff}.
    """
    mlp = model.blocks[pair.layer].mlp
    diffs = {}
    for t in range(len(x)):
        xt = x[t]
        in_acts = pair.sae_in.encode(xt)
        out_acts = pair.sae_out.encode(mlp(xt[None, None])[0, 0])
        active_in = torch.topk(in_acts, pair.k_in).indices
        active_out = torch.topk(out_acts, pair.k_out).indices
        for i in active_in.tolist():
            s = {"unit": 1.0, "zero": in_acts[i].item(), "scale": scale}[mode]
            for j in active_out.tolist():
                x_pert = xt - s * pair.sae_in.W_dec[i]
                new_out = pair.sae_out.encode(mlp(x_pert[None, None])[0, 0])
                diffs[(t, i, j)] = (new_out[j] - out_acts[j]).item()
    return diffs


def token_jacobian_function(model: HookedTransformer, pair: JSAEPair, x: torch.Tensor):
    """z_out[active_out](a_in[active_in]) for one token, the MLP fed x + (a - a0) @ W_dec_in.

    Returns (f, a0, active_in, active_out) so that jacrev(f)(a0) is the k_out x k_in Jacobian.
    """
    mlp = model.blocks[pair.layer].mlp
    sae_in, sae_out = pair.sae_in, pair.sae_out
    with torch.no_grad():
        a_full = sae_in.encode(x)
        active_in = torch.topk(a_full, pair.k_in).indices
        out_full = sae_out.encode(mlp(x[None, None])[0, 0])
        active_out = torch.topk(out_full, pair.k_out).indices
    a0 = a_full[active_in].clone()

    def f(a: torch.Tensor) -> torch.Tensor:
        x_new = x + (a - a0) @ sae_in.W_dec[active_in]
        y = mlp(x_new[None, None])[0, 0]
        z = sae_out.process_sae_in(y) @ sae_out.W_enc + sae_out.b_enc
        return z[active_out]

    return f, a0, active_in, active_out
