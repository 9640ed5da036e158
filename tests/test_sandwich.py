import numpy as np
import pytest
import torch
from transformer_lens.components.mlps.gated_mlp import GatedMLP
from transformer_lens.components.mlps.mlp import MLP

import jsae.sandwich as sandwich_module
from jsae.errors import UnsupportedError
from jsae.pair import hook_in_name
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import (
    ELEMENTWISE_ACTIVATIONS,
    MLPWeights,
    Perturbed,
    Sandwich,
    active_jacobian,
    get_mlp,
)
from tests.helpers import tiny_model, tiny_pair
from tests.reference import token_jacobian_function

PROMPT = "The quick brown fox jumps over the lazy dog."


def _inputs(model, layer):
    return mlp_inputs(model, tokenize(model, PROMPT).tokens, layer)


@pytest.mark.parametrize("folded", [False, True], ids=["LN", "folded"])
@pytest.mark.parametrize("layer", [0, 1])
def test_sandwich_equals_the_models_own_hooks(folded, layer):
    """The sandwich's MLP pre-activations and output equal the model's own
    blocks.L.mlp.hook_pre and blocks.L.hook_mlp_out, on an unfolded LayerNorm with a random
    gain and bias (where ln2.hook_normalized is *not* the MLP input) and on a folded one."""
    model = tiny_model(folded=folded)
    assert model.cfg.normalization_type == ("LNPre" if folded else "LN")
    tokens = tokenize(model, PROMPT).tokens
    hooks = [f"blocks.{layer}.mlp.hook_pre", f"blocks.{layer}.hook_mlp_out"]
    _, cache = model.run_with_cache(tokens[None], names_filter=[*hooks, hook_in_name(layer)])
    out = Sandwich(model, tiny_pair(model, layer=layer))(mlp_inputs(model, tokens, layer))
    torch.testing.assert_close(out.pre, cache[hooks[0]][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.mlp_out, cache[hooks[1]][0], atol=1e-5, rtol=0)
    gap = (cache[hook_in_name(layer)][0] - out.x).abs().max().item()
    assert (gap == 0) if folded else (gap > 0.05), "the test must tell the two inputs apart"


@pytest.mark.parametrize("act_fn", ELEMENTWISE_ACTIVATIONS)
def test_act_grad_matches_finite_differences(act_fn):
    model = tiny_model(act_fn=act_fn).double()
    mlp = MLPWeights.from_model(model, 0)
    pre = torch.randn(200, dtype=torch.float64) * 3
    h = 1e-6
    fd = (mlp.act_fn(pre + h) - mlp.act_fn(pre - h)) / (2 * h)
    torch.testing.assert_close(mlp.act_grad(pre), fd, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("act_fn", ELEMENTWISE_ACTIVATIONS)
def test_mlp_weights_reproduce_transformer_lens_mlp(act_fn):
    model = tiny_model(act_fn=act_fn)
    x = _inputs(model, 1)
    out, _ = MLPWeights.from_model(model, 1)(x)
    torch.testing.assert_close(out, model.blocks[1].mlp(x[None])[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("act_fn", ["gelu", "gelu_new", "relu", "silu"])
@pytest.mark.parametrize("k_out", [6, 10])
def test_jacobian_matches_autograd(act_fn, k_out):
    model = tiny_model(act_fn=act_fn)
    pair = tiny_pair(model, layer=1, d_sae=48, k=6, k_out=k_out)
    x = _inputs(model, 1)
    result = Sandwich(model, pair)(x)
    assert result.jacobian.shape == (len(x), k_out, 6)
    for t in range(len(x)):
        f, a0, active_in, active_out = token_jacobian_function(model, pair, x[t])
        expected = torch.func.jacrev(f)(a0)
        # rows and columns must line up with the same feature ids
        assert set(result.in_idx[t].tolist()) == set(active_in.tolist())
        assert set(result.out_idx[t].tolist()) == set(active_out.tolist())
        rows = [active_out.tolist().index(j) for j in result.out_idx[t].tolist()]
        cols = [active_in.tolist().index(i) for i in result.in_idx[t].tolist()]
        torch.testing.assert_close(
            result.jacobian[t], expected[rows][:, cols], atol=1e-5, rtol=1e-4
        )


def test_jacobian_matches_finite_differences_in_float64():
    model = tiny_model(act_fn="gelu_new").double()
    pair = tiny_pair(model, layer=0, d_sae=40, k=5)
    pair.sae_in.to(torch.float64)  # sae-lens tracks dtype in .to(), not .double()
    pair.sae_out.to(torch.float64)
    x = _inputs(model, 0)
    result = Sandwich(model, pair)(x)
    h = 1e-6
    for t in (1, len(x) - 1):
        f, a0, active_in, active_out = token_jacobian_function(model, pair, x[t])
        for c, i in enumerate(result.in_idx[t].tolist()):
            col = active_in.tolist().index(i)
            e = torch.zeros_like(a0)
            e[col] = h
            fd = (f(a0 + e) - f(a0 - e)) / (2 * h)
            rows = [active_out.tolist().index(j) for j in result.out_idx[t].tolist()]
            torch.testing.assert_close(result.jacobian[t, :, c], fd[rows], atol=1e-7, rtol=1e-6)


def test_jacobian_entries_are_indexed_by_feature_ids():
    """J[t, r, c] is the derivative of out feature out_idx[t, r] wrt in feature in_idx[t, c]."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    x = _inputs(model, 1)
    s = Sandwich(model, pair)
    res = s(x)
    t, r, c = 3, 2, 1
    i, j = res.in_idx[t, c].item(), res.out_idx[t, r].item()
    W_in, W_out = model.blocks[1].mlp.W_in, model.blocks[1].mlp.W_out
    pre = x[t] @ W_in + model.blocks[1].mlp.b_in
    manual = (
        (pair.sae_in.W_dec[i] @ W_in) * s.mlp.act_grad(pre) @ (W_out @ pair.sae_out.W_enc[:, j])
    )
    torch.testing.assert_close(res.jacobian[t, r, c], manual, atol=1e-5, rtol=1e-5)


def test_unsupported_mlps_are_refused():
    gated = tiny_model(gated_mlp=True)
    with pytest.raises(UnsupportedError, match="gated MLP"):
        Sandwich(gated, tiny_pair(gated, layer=0))
    solu = tiny_model(act_fn="solu_ln")
    with pytest.raises(
        UnsupportedError,
        match=r"^The model's activation function 'solu_ln' is not supported; jsae supports "
        r"relu, gelu, gelu_new, gelu_fast, gelu_pytorch_tanh, silu, relu2\.$",
    ):
        Sandwich(solu, tiny_pair(solu, layer=0))


def test_an_mlp_that_is_not_the_plain_mlp_is_refused_by_what_it_is():
    """A gated MLP is found by its W_gate even when the config does not say so, and any other
    module class than TransformerLens's MLP is refused by name."""
    model = tiny_model()
    model.blocks[0].mlp = GatedMLP(model.cfg)
    assert not model.cfg.gated_mlp
    with pytest.raises(
        UnsupportedError,
        match=r"^Layer 0 has a gated MLP \(GatedMLP\); jsae handles ungated MLPs "
        r"\(x -> act_fn\(x W_in \+ b_in\) W_out \+ b_out\) only\.$",
    ):
        get_mlp(model, 0)

    class QuantisedMLP(MLP):
        pass

    other = tiny_model()
    other.blocks[1].mlp = QuantisedMLP(other.cfg)
    with pytest.raises(
        UnsupportedError,
        match=r"^Layer 1's MLP is a QuantisedMLP; jsae handles TransformerLens's plain MLP only "
        r"\(no mixture of experts, no quantised weights\)\.$",
    ):
        get_mlp(other, 1)


@pytest.mark.parametrize("apply_b_dec", [False, True])
def test_out_pre_from_pre_is_the_output_saes_pre_activations_written_where_asked(apply_b_dec):
    """Against numpy in float64 from the model's own MLP output: (mlp_out − b_dec ·
    apply_b_dec_to_input) @ W_enc + b_enc, for every feature; with ``out``, the result is
    that buffer (its memory, its values)."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=40, k=5, apply_b_dec_to_input=apply_b_dec)
    sandwich = Sandwich(model, pair)
    x = _inputs(model, 1)
    with torch.no_grad():
        mlp_out = model.blocks[1].mlp(x[None])[0].double().numpy()
    sae = pair.sae_out
    W_enc, b_enc, b_dec = (t.detach().double().numpy() for t in (sae.W_enc, sae.b_enc, sae.b_dec))
    expected = (mlp_out - b_dec * apply_b_dec) @ W_enc + b_enc
    pre = sandwich.mlp.pre(x)
    np.testing.assert_allclose(sandwich.out_pre_from_pre(pre).numpy(), expected, atol=1e-5)
    buffer = torch.empty(len(x), 40)
    got = sandwich.out_pre_from_pre(pre, out=buffer)
    assert got.data_ptr() == buffer.data_ptr()
    np.testing.assert_allclose(buffer.numpy(), expected, atol=1e-5, rtol=0)


def test_jacobian_blocks_of_tokens_fill_the_budget_and_cover_each_token_once(monkeypatch):
    """With a budget of 3 tokens' gathered rows (in_rows, out_rows and out_rows·act_grad,
    measured on the tensors active_jacobian receives), the Jacobian is built 3 tokens at a
    time, each token once, and equals the one-block Jacobian."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=6, k_out=4)
    sandwich = Sandwich(model, pair)
    x = _inputs(model, 1)
    whole = sandwich(x)
    blocks = []

    def spy(in_rows, act_grad, out_rows):
        blocks.append(in_rows.nbytes + 2 * out_rows.nbytes)
        return active_jacobian(in_rows, act_grad, out_rows)

    per_token = 4 * (6 + 2 * 4) * 64
    for budget, rows in ((3 * per_token + per_token // 2, 3), (per_token - 1, 1)):
        blocks.clear()
        monkeypatch.setattr(sandwich_module, "JACOBIAN_BLOCK_BYTES", budget)
        monkeypatch.setattr(sandwich_module, "active_jacobian", spy)
        got = sandwich.jacobian(whole.in_idx, whole.act_grad, whole.out_idx)
        monkeypatch.undo()
        torch.testing.assert_close(got, whole.jacobian, atol=0, rtol=0)
        sizes = [b // per_token for b in blocks]
        n = len(x)
        assert sizes == [rows] * (n // rows) + ([n % rows] if n % rows else []), sizes
        assert all(b <= budget for b in blocks) or rows == 1


def test_perturbed_rows_fill_the_buffer_and_the_outputs_they_are_given():
    """perturbed_out_acts writes the rows' output-SAE pre-activations into ``buffer``
    (checked against the model's own MLP and the SAE's weights in float64) and its results
    into ``out``, returning those same tensors; without ``out`` it returns equal values."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=40, k=5, k_out=3)
    sandwich = Sandwich(model, pair)
    x = _inputs(model, 1)[:4]
    base = sandwich(x)
    s = torch.full_like(base.in_act, 0.5)
    plain = sandwich.perturbed_out_acts(base.pre, base.in_idx, s, base.out_idx)
    buffer = torch.empty(4 * 5, 40)
    out = Perturbed(
        torch.empty(4, 5, 3),
        torch.empty(4, 5, 3),
        torch.empty(4, 5, 3, dtype=torch.bool),
        torch.empty(4, 5, dtype=torch.long),
    )
    got = sandwich.perturbed_out_acts(
        base.pre, base.in_idx, s, base.out_idx, buffer=buffer, out=out
    )
    for name in Perturbed._fields:
        assert getattr(got, name) is getattr(out, name), name
        torch.testing.assert_close(getattr(got, name), getattr(plain, name), atol=0, rtol=0)
    sae = pair.sae_out
    W_dec = pair.sae_in.W_dec.detach().double()
    W_enc, b_enc = sae.W_enc.detach().double(), sae.b_enc.detach().double()
    rows = x.double()[:, None, :] - 0.5 * W_dec[base.in_idx]  # tokens k_in d_model
    with torch.no_grad():
        mlp = model.blocks[1].mlp.double()
        expected = mlp(rows) @ W_enc + b_enc
        mlp.float()
    torch.testing.assert_close(buffer.double().view(4, 5, 40), expected, atol=1e-4, rtol=0)
