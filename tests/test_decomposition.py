"""The per-connection decomposition of diff: diff = predicted + curvature + gate, exits,
entries and margins, checked against full sorts of the output SAE's pre-activations."""

import numpy as np
import pytest
import torch

from jsae.ablation import AblationConfig, ablate, ablate_activations
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair
from tests.reference import decomposition_loop

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
