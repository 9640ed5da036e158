"""The per-connection decomposition of diff: diff = predicted + curvature + gate, exits,
entries and margins, checked against full sorts of the output SAE's pre-activations."""

import numpy as np
import pytest
import torch

from jsae.ablation import AblationConfig, ablate, ablate_activations
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair
from tests.reference import decomposition_loop, notebook_loop

PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x"


@pytest.mark.parametrize("mode", ["unit", "zero"])
def test_decomposition_matches_full_sorts(mode):
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=6)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:10]
    expected = decomposition_loop(model, pair, x, mode=mode)
    got = ablate_activations(Sandwich(model, pair), x, AblationConfig(mode=mode))
    keys = list(
        zip(got.position.tolist(), got.in_feature.tolist(), got.out_feature.tolist(), strict=True)
    )
    assert sorted(keys) == sorted(expected)
    for name in ("pre_diff", "margin"):
        want = np.array([expected[k][name] for k in keys])
        np.testing.assert_allclose(getattr(got, name).numpy(), want, atol=1e-5, rtol=0)
    exited = np.array([expected[k]["exited"] for k in keys])
    np.testing.assert_array_equal(got.exited.numpy(), exited)
    assert exited.any() and not exited.all(), "the tiny pair must have exits and stays"
    np.testing.assert_array_equal(got.entered.numpy(), [expected[k]["entered"] for k in keys])
    # an exit reads 0 afterwards; a feature that stays keeps its un-gated change
    diff, pre_diff, out_act = got.diff.numpy(), got.pre_diff.numpy(), got.out_act.numpy()
    np.testing.assert_allclose(diff[exited], -out_act[exited], atol=1e-6)
    stays = ~exited & (out_act + pre_diff > 0)
    np.testing.assert_allclose(diff[stays], pre_diff[stays], atol=1e-5)
    assert (got.margin.numpy() >= 0).all(), "an active feature sits above every inactive one"


def test_the_three_parts_add_up_to_diff_in_the_table():
    model = tiny_model(folded=True)
    pair = tiny_pair(model, layer=0, d_sae=40, k=5)
    table = ablate(model, pair, PROMPT, config=AblationConfig(mode="zero")).table
    parts = table[["predicted", "curvature", "gate"]].to_numpy(np.float64).sum(axis=1)
    np.testing.assert_allclose(parts, table["diff"].to_numpy(np.float64), atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        table["predicted"] + table["curvature"], table["pre_diff"], atol=1e-6, rtol=0
    )
    # the gate is the exits' part: zero while the feature stays active and positive
    stays = ~table["exited"] & (table["out_act"] + table["pre_diff"] > 0)
    assert np.abs(table.loc[stays, "gate"]).max() < 1e-6
    assert (table.loc[table["exited"], "gate"] != 0).all()
    assert (table.loc[~table["exited"], "entered"] >= -1).all()
    assert (table.loc[table["exited"], "entered"] >= 0).all(), "an exit makes room for someone"


def test_entered_is_the_strongest_newcomer_when_two_leave():
    """A hand-made case: push two active features down at once and check who entered."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=32, k=4)
    sandwich = Sandwich(model, pair)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[3:4]
    base = sandwich(x)
    # a step so large along every input feature that the output's top k changes a lot
    after = sandwich.perturbed_out_acts(
        base.pre, base.in_idx, torch.full_like(base.in_act, 25.0), base.out_idx
    )
    pre_full = sandwich.out_pre_from_pre(
        base.pre[:, None, :] - 25.0 * sandwich.dec_in_W_in[base.in_idx]
    )[0]
    for row in range(base.in_idx.shape[1]):
        top = torch.topk(pre_full[row], pair.k_out).indices.tolist()
        newcomers = [f for f in top if f not in base.out_idx[0].tolist()]
        strongest = max(newcomers, key=lambda f: pre_full[row, f].item()) if newcomers else -1
        assert after.entered[0, row].item() == strongest
    assert (after.entered >= 0).any()


def negative_pair(model, layer=1, d_sae=40, k=6, shift=1.0):
    """A pair whose encoder biases push most pre-activations below 0: fewer than k features
    are positive on most tokens, so the top k holds features that the ReLU reads as 0."""
    pair = tiny_pair(model, layer=layer, d_sae=d_sae, k=k)
    with torch.no_grad():
        pair.sae_in.b_enc.sub_(shift)
        pair.sae_out.b_enc.sub_(shift)
    return pair


@pytest.mark.parametrize("mode", ["unit", "zero"])
def test_fewer_than_k_positive_pre_activations(mode):
    """The regime no other fixture reaches: the engine still equals the notebook loop on
    sae-lens's own encode, activations are never negative, and zero-mode steps of inactive
    (0-valued) inputs perturb nothing."""
    model = tiny_model()
    pair = negative_pair(model)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:10]
    sandwich = Sandwich(model, pair)
    base = sandwich(x)
    positive_in = (pair.sae_in.encode(x) > 0).sum(-1)
    positive_out = (pair.sae_out.encode(base.mlp_out) > 0).sum(-1)
    assert (positive_in < pair.k_in).any() and (positive_out < pair.k_out).any()
    # the base pass's activations are sae-lens's, row by row (zeros included)
    for t in range(len(x)):
        want_in = pair.sae_in.encode(x[t])
        want_out = pair.sae_out.encode(base.mlp_out[t])
        torch.testing.assert_close(base.in_act[t], want_in[base.in_idx[t]], atol=1e-6, rtol=0)
        torch.testing.assert_close(base.out_act[t], want_out[base.out_idx[t]], atol=1e-6, rtol=0)
    assert (base.in_act >= 0).all() and (base.out_act >= 0).all()
    got = ablate_activations(sandwich, x, AblationConfig(mode=mode))
    expected = notebook_loop(model, pair, x, mode=mode)
    # Which 0-valued features fill a top k is a tie the loop (top k of ReLU'd activations)
    # breaks its own way; every connection between positive features is the same in both
    keys = list(
        zip(got.position.tolist(), got.in_feature.tolist(), got.out_feature.tolist(), strict=True)
    )
    positive = (got.in_act.numpy() > 0) & (got.out_act.numpy() > 0)
    assert positive.any() and (~positive).any()
    shared = [n for n, key in enumerate(keys) if positive[n]]
    assert all(keys[n] in expected for n in shared)
    want = np.array([expected[keys[n]]["diff"] for n in shared])
    np.testing.assert_allclose(got.diff.numpy()[shared], want, atol=1e-5, rtol=0)
    assert (got.out_act.numpy() + got.diff.numpy() >= -1e-7).all(), "no negative activation"
    if mode == "zero":
        silent = got.in_act.numpy() == 0  # a 0-valued input is removed by a step of 0
        assert silent.any()
        np.testing.assert_array_equal(got.diff.numpy()[silent], 0.0)
