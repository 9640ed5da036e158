"""Independent references the engine is checked against: slow, obvious, and built only on
TransformerLens's MLP module and sae-lens's ``encode``."""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from jsae.pair import JSAEPair


@torch.no_grad()
def notebook_loop(
    model: HookedTransformer,
    pair: JSAEPair,
    x: torch.Tensor,
    mode: str = "unit",
    scale: float = 1.0,
) -> dict[tuple[int, int, int], dict[str, float]]:
    """The research notebook's loop: one MLP + output-SAE run per (token, in, out) connection.

    Returns {(token, in_feature, out_feature): {in_act, out_act, s, diff}}: the input and
    output features' activations on the unperturbed token (sae-lens ``encode`` on x and on
    TransformerLens's MLP output), the step s taken along W_dec_in[i], and the change of
    out_act (the output SAE re-encodes the perturbed MLP output, top k re-selected).
    """
    mlp = model.blocks[pair.layer].mlp
    rows = {}
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
                rows[(t, i, j)] = {
                    "in_act": in_acts[i].item(),
                    "out_act": out_acts[j].item(),
                    "s": s,
                    "diff": (new_out[j] - out_acts[j]).item(),
                }
    return rows


def notebook_jacobian(
    model: HookedTransformer, pair: JSAEPair, x: torch.Tensor
) -> dict[tuple[int, int, int], float]:
    """{(token, in_feature, out_feature): J[out, in]} by ``torch.func.jacrev`` of
    ``token_jacobian_function``, token by token (autograd through TransformerLens's MLP)."""
    jac = {}
    for t in range(len(x)):
        f, a0, active_in, active_out = token_jacobian_function(model, pair, x[t])
        J = torch.func.jacrev(f)(a0)  # k_out x k_in
        for c, i in enumerate(active_in.tolist()):
            for r, j in enumerate(active_out.tolist()):
                jac[(t, i, j)] = J[r, c].item()
    return jac


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


@torch.no_grad()
def decomposition_loop(
    model: HookedTransformer, pair: JSAEPair, x: torch.Tensor, mode: str = "unit"
) -> dict[tuple[int, int, int], dict[str, float]]:
    """Per connection, by full sorts of the output SAE's pre-activations (sae-lens's own
    encoder matmul, TransformerLens's MLP module): the un-gated pre-activation change, whether
    j left the top k, the strongest newcomer to the top k, and j's margin over the best
    inactive feature before the perturbation.

    Returns {(token, in_feature, out_feature): {pre_diff, exited, entered, margin}}.
    """
    mlp = model.blocks[pair.layer].mlp
    sae_in, sae_out = pair.sae_in, pair.sae_out

    def out_pre(x_row: torch.Tensor) -> torch.Tensor:
        y = mlp(x_row[None, None])[0, 0]
        return sae_out.process_sae_in(y) @ sae_out.W_enc + sae_out.b_enc

    rows = {}
    for t in range(len(x)):
        in_acts = sae_in.encode(x[t])
        active_in = torch.topk(in_acts, pair.k_in).indices.tolist()
        pre = out_pre(x[t])
        order = torch.sort(pre, descending=True).indices.tolist()
        active_out, runner_up = order[: pair.k_out], pre[order[pair.k_out]].item()
        for i in active_in:
            s = {"unit": 1.0, "zero": in_acts[i].item()}[mode]
            new = out_pre(x[t] - s * sae_in.W_dec[i])
            new_order = torch.sort(new, descending=True).indices.tolist()[: pair.k_out]
            newcomers = [f for f in new_order if f not in active_out]  # strongest first
            for j in active_out:
                rows[(t, i, j)] = {
                    "pre_diff": (new[j] - pre[j]).item(),
                    "exited": j not in new_order,
                    "entered": newcomers[0] if newcomers else -1,
                    "margin": pre[j].item() - runner_up,
                }
    return rows


@torch.no_grad()
def joint_loop(
    model: HookedTransformer,
    pair: JSAEPair,
    x: torch.Tensor,
    removed: dict[tuple[int, int], list[int]],
    mode: str = "unit",
    scale: float = 1.0,
) -> dict[tuple[int, int], float]:
    """Remove sets of input features together, one MLP + output-SAE run per set.

    ``removed[(token, out_feature)]`` lists input *feature ids*; returns the change of
    out_feature's activation, {(token, out_feature): diff}, with the MLP fed
    x - sum_i s_i W_dec_in[i] and the output SAE re-encoding it (top k re-selected), all
    through TransformerLens's MLP module and sae-lens's ``encode``.
    """
    mlp = model.blocks[pair.layer].mlp
    diffs = {}
    for (t, j), features in removed.items():
        xt = x[t]
        in_acts = pair.sae_in.encode(xt)
        before = pair.sae_out.encode(mlp(xt[None, None])[0, 0])[j]
        x_pert = xt.clone()
        for i in features:
            s = {"unit": 1.0, "zero": in_acts[i].item(), "scale": scale}[mode]
            x_pert = x_pert - s * pair.sae_in.W_dec[i]
        after = pair.sae_out.encode(mlp(x_pert[None, None])[0, 0])[j]
        diffs[(t, j)] = (after - before).item()
    return diffs


@torch.no_grad()
def downstream_loop(
    model: HookedTransformer,
    pair: JSAEPair,
    tokens: torch.Tensor,
    x: torch.Tensor,
    positions: list[int],
    removed: dict[tuple[int, int], list[int]],
    mode: str = "unit",
) -> torch.Tensor:
    """The next-token KL(clean || patched) at each of ``positions`` when every active output
    feature j of each position (MLP input ``x[position]``) loses the input features ``removed[(position, j)]`` together.

    Per position, one MLP + output-SAE run per j (TransformerLens's MLP module on the MLP
    input, sae-lens's ``encode``) gives j's new activation; the modified code is decoded with
    sae-lens's ``decode`` and the SAE's error term (the model's own ``hook_mlp_out`` minus the
    decode of its code) added back; the results replace ``hook_mlp_out`` at ``positions`` in
    one hooked run, and F.kl_div compares the float64 log-softmaxes. Returns [positions].
    """
    layer, mlp = pair.layer, model.blocks[pair.layer].mlp
    sae_in, sae_out = pair.sae_in, pair.sae_out
    name = f"blocks.{layer}.hook_mlp_out"
    logits, cache = model.run_with_cache(tokens[None], names_filter=[name])
    patched = []
    for p in positions:
        mlp_out = cache[name][0, p]
        code = sae_out.encode(mlp_out)
        new_code = code.clone()
        in_acts = sae_in.encode(x[p])
        for j in torch.topk(code, pair.k_out).indices.tolist():
            x_pert = x[p].clone()
            for i in removed[(p, j)]:
                s = {"unit": 1.0, "zero": in_acts[i].item()}[mode]
                x_pert = x_pert - s * sae_in.W_dec[i]
            new_code[j] = sae_out.encode(mlp(x_pert[None, None])[0, 0])[j]
        patched.append(sae_out.decode(new_code) + (mlp_out - sae_out.decode(code)))

    def splice(value, hook):
        value[0, positions] = torch.stack(patched)
        return value

    patched_logits = model.run_with_hooks(tokens[None], fwd_hooks=[(name, splice)])
    log_p = torch.log_softmax(logits[0, positions].double(), -1)
    log_q = torch.log_softmax(patched_logits[0, positions].double(), -1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def jacobian_rows(
    model: HookedTransformer, pair: JSAEPair, x: torch.Tensor, n_rows: int
) -> torch.Tensor:
    """One token's Jacobian of the output SAE's ``n_rows`` largest pre-activations (largest
    first, so the k_out active ones, then those below the threshold) with respect to the input
    SAE's k_in active activations (sae-lens ``encode``), by ``torch.func.jacrev`` through
    TransformerLens's MLP module: ``[n_rows, k_in]``."""
    mlp = model.blocks[pair.layer].mlp
    sae_in, sae_out = pair.sae_in, pair.sae_out
    with torch.no_grad():
        a_full = sae_in.encode(x)
        active_in = torch.topk(a_full, pair.k_in).indices
    a0 = a_full[active_in].detach().clone()

    def z(a: torch.Tensor) -> torch.Tensor:
        x_new = x + (a - a0) @ sae_in.W_dec[active_in]
        y = mlp(x_new[None, None])[0, 0]
        return sae_out.process_sae_in(y) @ sae_out.W_enc + sae_out.b_enc

    with torch.no_grad():
        rows = torch.sort(z(a0), descending=True).indices[:n_rows]
    return torch.func.jacrev(z)(a0)[rows]


def research_loss(
    model: HookedTransformer, pair: JSAEPair, x: torch.Tensor, jacobian_coefficient: float
) -> torch.Tensor:
    """The research code's training loss, written out as jacobian_saes does it (commit
    b73cadb: ``TrainingSAEPair.training_forward_pass`` and ``apply_sae`` in
    training/training_sae_pair.py, ``MLPWithActGrads``, the ``l1`` sparsity metric):
    dense top-k codes (ReLU of the top k, scattered), ``F.mse_loss(...).mean()`` of each
    SAE, the MLP (TransformerLens's module) fed the original x, act_fn' by autograd, and
    J = einsum(wd1[topk_in], act', w2e[:, topk_out]) with wd1 = W_dec_in @ W_in and
    w2e = W_out @ W_enc_out; loss = mse_in + λ·mean|J| + mse_out."""
    mlp = model.blocks[pair.layer].mlp

    def apply_sae(sae, sae_in):
        hidden_pre = (sae_in - sae.b_dec * sae.cfg.apply_b_dec_to_input) @ sae.W_enc + sae.b_enc
        topk = torch.topk(hidden_pre, k=sae.cfg.k, dim=-1)
        acts = torch.zeros_like(hidden_pre).scatter(-1, topk.indices, topk.values.relu())
        out = acts @ sae.W_dec + sae.b_dec
        return topk.indices, F.mse_loss(out, sae_in, reduction="none").mean()

    idx_in, mse_in = apply_sae(pair.sae_in, x)
    pre = (x @ mlp.W_in + mlp.b_in).detach().requires_grad_(True)
    with torch.enable_grad():
        post = mlp.act_fn(pre)
        (act_grads,) = torch.autograd.grad(post, pre, grad_outputs=torch.ones_like(post))
    mlp_out = mlp(x[None])[0]
    idx_out, mse_out = apply_sae(pair.sae_out, mlp_out)
    wd1 = pair.sae_in.W_dec @ mlp.W_in
    w2e = mlp.W_out @ pair.sae_out.W_enc
    jacobian = einops.einsum(
        wd1[idx_in], act_grads, w2e[:, idx_out], "s k1 m, s m, m s k2 -> s k2 k1"
    )
    return mse_in + jacobian_coefficient * jacobian.abs().mean() + mse_out
