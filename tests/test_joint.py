"""Joint ablation: the batched curves against an independent loop, and the score's anchors."""

import numpy as np
import pytest
import torch

from jsae.ablation import AblationConfig, ablate_activations
from jsae.analysis.faithfulness import JointSums, faithfulness_score, joint_statistics, set_sizes
from jsae.analysis.joint import ORDERS, JointCurves, joint_curves, removal_orders
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair
from tests.reference import joint_loop

PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x"
ATOL = 1e-5  # float32, batched rows vs the loop


def _setup(k=6, tokens=8, act_fn="gelu", folded=False, **pair_kwargs):
    model = tiny_model(act_fn=act_fn, folded=folded)
    pair = tiny_pair(model, layer=1, d_sae=48, k=k, apply_b_dec_to_input=True, **pair_kwargs)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:tokens]
    return model, pair, x


@pytest.mark.parametrize(("mode", "scale"), [("unit", 1.0), ("zero", 1.0), ("scale", -0.7)])
@pytest.mark.parametrize("folded", [False, True], ids=["LN", "folded"])
def test_every_curve_point_equals_the_loop(mode, scale, folded):
    """Every (token, order, j, m): the set the order removes, run through TransformerLens's
    MLP and sae-lens's encode one set at a time."""
    model, pair, x = _setup(tokens=5, folded=folded)
    curves = joint_curves(Sandwich(model, pair), x, AblationConfig(mode=mode, scale=scale))
    removed, index = {}, []
    for t in range(curves.n_tokens):
        for o in range(len(ORDERS)):
            for r, j in enumerate(curves.out_idx[t].tolist()):
                for m in range(curves.k_in + 1):
                    ranks = curves.order[t, o, r, :m].tolist()
                    features = [int(curves.in_idx[t, i]) for i in ranks]
                    index.append(((t, j, o, m), (t, o, r, m)))
                    removed[(t, j, o, m)] = features
    # joint_loop keys by (token, out_feature); run it per (order, m) label
    want = {}
    for key, features in removed.items():
        t, j = key[:2]
        want[key] = joint_loop(model, pair, x, {(t, j): features}, mode, scale)[(t, j)]
    got = curves.diff
    for key, (t, o, r, m) in index:
        assert got[t, o, r, m].item() == pytest.approx(want[key], abs=ATOL), (key, ORDERS[o])


def test_orders_sort_what_they_say_and_one_input_is_the_single_engine():
    model, pair, x = _setup(tokens=8)
    sandwich = Sandwich(model, pair)
    curves = joint_curves(sandwich, x, AblationConfig(mode="zero"))
    jac, single = curves.jacobian.numpy(), curves.single_diff.numpy()
    order = curves.order.numpy()
    # each order is a permutation, sorted by what it names
    assert (np.sort(order, -1) == np.arange(curves.k_in)).all()
    by = {name: np.take_along_axis(v, order[:, o], -1) for o, (name, v) in enumerate(
        [("jacobian", np.abs(jac)), ("reverse", -np.abs(jac)), ("oracle", np.abs(single))])}  # fmt: skip
    for name, values in by.items():
        assert (np.diff(values, axis=-1) >= 0).all(), name
    random = order[:, ORDERS.index("random")]
    assert (random == random[:, :1]).all(), "one random permutation per token, shared by its j"
    assert len({tuple(r[0]) for r in random}) > 1, "tokens draw different permutations"
    # a set of one input is the single-connection engine's row
    table = ablate_activations(sandwich, x, AblationConfig(mode="zero"))
    single_rows = table.diff.view(curves.n_tokens, curves.k_in, curves.k_out).transpose(1, 2)
    first = torch.gather(single_rows, -1, curves.order[:, 0, :, :1])[..., 0]
    assert torch.allclose(curves.diff[:, 0, :, 1], first, atol=ATOL)
    # the empty set moves nothing; every order's full set is the same row
    assert (curves.diff[..., 0] == 0).all()
    full = curves.diff[..., -1]
    assert (full == full[:, :1]).all()
    loop = joint_loop(
        model, pair, x,
        {(t, j): curves.in_idx[t].tolist() for t in range(curves.n_tokens)
         for j in curves.out_idx[t].tolist()},
        "zero",
    )  # fmt: skip
    for t in range(curves.n_tokens):
        for r, j in enumerate(curves.out_idx[t].tolist()):
            assert full[t, 0, r].item() == pytest.approx(loop[(t, j)], abs=ATOL)


def test_chunks_and_blocks_do_not_change_the_result():
    model, pair, x = _setup(tokens=8)
    sandwich = Sandwich(model, pair)
    big = joint_curves(sandwich, x, AblationConfig(mode="unit"))
    small = joint_curves(sandwich, x, AblationConfig(mode="unit", memory_budget=60_000))
    assert torch.equal(big.order, small.order), "the random order does not depend on chunks"
    assert torch.allclose(big.act, small.act, atol=1e-6)
    assert torch.equal(big.exited, small.exited)


def _linear_sandwich(act_fn: str):
    """An output SAE whose every feature is active with a large positive pre-activation, so
    top-k re-selection never acts: the joint diff is the MLP's own (non)linearity."""
    model = tiny_model(act_fn="gelu")
    pair = tiny_pair(model, layer=1, d_sae=24, k=5, k_out=24)
    with torch.no_grad():
        pair.sae_out.b_enc.fill_(100.0)
    sandwich = Sandwich(model, pair)
    if act_fn == "identity":
        sandwich.mlp.act_fn = lambda pre: pre
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[:6]
    return joint_curves(sandwich, x, AblationConfig(mode="zero"))


def test_a_linear_mlp_adds_up_and_gelu_does_not():
    linear = _linear_sandwich("identity")
    assert not linear.exited.any()
    gap = (linear.diff - linear.additive).abs()
    assert gap.max() < 1e-4 * linear.diff.abs().max()
    gelu = _linear_sandwich("gelu")
    assert not gelu.exited.any()
    gelu_gap = (gelu.diff - gelu.additive).abs()
    assert gelu_gap.max() > 100 * gap.max(), "GELU's curvature shows as an additivity gap"
    stats = joint_statistics(linear, 0.01, n_bootstrap=0)
    assert stats.sets["mean_additivity_gap"].max() < 1e-4


def _additive_curves(jacobian: torch.Tensor, effect: torch.Tensor, seed: int = 0) -> JointCurves:
    """Curves of a made-up pair whose output features move by the sum of the removed inputs'
    effects (no exits): what an order removes decides the curve."""
    tokens, k_out, k_in = effect.shape
    order = removal_orders(jacobian, effect, torch.Generator().manual_seed(seed))
    ordered = torch.gather(effect[:, None].expand(-1, len(ORDERS), -1, -1), -1, order)
    out_act = torch.full((tokens, k_out), 10.0)
    act = out_act[:, None, :, None] + torch.cat(
        [torch.zeros(*ordered.shape[:-1], 1), ordered.cumsum(-1)], -1
    )
    idx = torch.arange(k_in).expand(tokens, k_in)
    return JointCurves(
        torch.arange(tokens), idx, torch.ones(tokens, k_in), torch.ones(tokens, k_in),
        torch.arange(k_out).expand(tokens, k_out), out_act, jacobian, effect, order, act,
        torch.zeros(act.shape, dtype=torch.bool),
    )  # fmt: skip


def test_the_score_is_one_for_the_oracle_order_and_about_zero_for_a_shuffled_jacobian():
    gen = torch.Generator().manual_seed(1)
    effect = torch.rand(3000, 4, 8, generator=gen) ** 3
    perfect = joint_statistics(_additive_curves(2 * effect, effect), 0.01, n_bootstrap=50)
    assert perfect.score == 1.0
    assert perfect.score_ci == (1.0, 1.0)
    shuffled = effect[torch.randperm(len(effect), generator=gen)]
    blind = joint_statistics(_additive_curves(shuffled, effect), 0.01, n_bootstrap=200)
    assert abs(blind.score) < 0.05
    lo, hi = blind.score_ci
    assert lo < 0 < hi, "an uninformative |J| has an interval around 0"
    reverse = joint_statistics(_additive_curves(-1 / (effect + 1e-3), effect), 0.01, 0)
    assert reverse.score < -0.5, "ranking the largest effects first is worse than random"
    # the area is the trapezoid rule on the mean curve, computed here by hand
    mean = (effect.sort(-1).values.cumsum(-1).mean((0, 1))).tolist()
    by_hand = sum((a + b) / 2 for a, b in zip([0.0] + mean[:-1], mean, strict=True)) / 8
    assert perfect.area["oracle"] == pytest.approx(by_hand, rel=1e-6)
    assert np.isnan(faithfulness_score({"random": 1.0, "oracle": 1.0, "jacobian": 0.5}))
    assert faithfulness_score({"random": 2.0, "oracle": 1.0, "jacobian": 1.5}) == 0.5


def test_sets_are_split_at_eps_and_their_means_equal_the_loop():
    model, pair, x = _setup(tokens=6)
    curves = joint_curves(Sandwich(model, pair), x, AblationConfig(mode="zero"))
    eps = float(curves.jacobian.abs().median())
    sizes = set_sizes(curves, eps)
    jac = curves.jacobian.abs().numpy()
    assert (sizes["unimportant"].numpy() == (jac <= eps).sum(-1)).all()
    assert (sizes["important"].numpy() == (jac > eps).sum(-1)).all()
    stats = joint_statistics(curves, eps, n_bootstrap=0)
    for name, keep in (("unimportant", jac <= eps), ("important", jac > eps)):
        removed = {
            (t, j): [int(curves.in_idx[t, i]) for i in np.flatnonzero(keep[t, r])]
            for t in range(curves.n_tokens)
            for r, j in enumerate(curves.out_idx[t].tolist())
            if keep[t, r].any()
        }
        loop = joint_loop(model, pair, x, removed, "zero")
        row = stats.of_set(name)
        assert row["pairs"] == len(removed)
        assert row["mean_abs_diff"] == pytest.approx(np.mean(np.abs(list(loop.values()))), abs=ATOL)
    random = stats.of_set("random")
    assert random["mean_size"] == stats.of_set("unimportant")["mean_size"]


def test_sums_merge_exactly_across_any_split_of_the_tokens():
    model, pair, x = _setup(tokens=8)
    curves = joint_curves(Sandwich(model, pair), x, AblationConfig(mode="unit"))

    def part(sl):
        return JointCurves(*(getattr(curves, f)[sl] for f in JointCurves.__dataclass_fields__))

    whole = JointSums.of(curves, 0.01)
    a = JointSums.of(part(slice(0, 3)), 0.01).merge(JointSums.of(part(slice(3, 8)), 0.01))
    b = JointSums.of(part(slice(0, 5)), 0.01).merge(JointSums.of(part(slice(5, 8)), 0.01))
    assert a == whole and b == whole
    curve = whole.curve_frame()
    jac = curve[curve["order"] == "jacobian"]["mean_abs_diff"].to_numpy()
    want = curves.diff[:, 0].abs().double().mean((0, 1)).numpy()
    assert np.allclose(jac, want, rtol=1e-12)


def test_no_tokens_give_empty_curves_shaped_as_a_real_run():
    """Every field of an empty result has a real run's trailing shape and dtype, so its
    derived curves and statistics read as empty (found by `make mutate`)."""
    model, pair, x = _setup(k=5, tokens=2, k_out=3)
    sandwich = Sandwich(model, pair)
    real = joint_curves(sandwich, x, AblationConfig(mode="unit"))
    empty = joint_curves(sandwich, x[:0], AblationConfig(mode="unit"))
    assert empty.n_tokens == 0 and (empty.k_in, empty.k_out) == (5, 3)
    for name in (
        "positions",
        "in_idx",
        "in_act",
        "steps",
        "out_idx",
        "out_act",
        "jacobian",
        "single_diff",
        "order",
        "act",
        "exited",
        "diff",
        "predicted",
        "additive",
    ):
        got, want = getattr(empty, name), getattr(real, name)
        assert got.shape == (0, *want.shape[1:]) and got.dtype == want.dtype, name


def test_each_joint_row_is_computed_once_into_the_chunks_buffer(monkeypatch):
    """Whatever the budget, a token's 1 + (k_in − 1)(1 + 3 k_out) rows (the module
    docstring's count) each go through the output SAE once, every block into its chunk's one
    [block rows, d_sae_out] buffer, and the curves are the same (exits as booleans)."""
    model, pair, x = _setup(k=5, tokens=3, k_out=3)
    sandwich = Sandwich(model, pair)
    whole = joint_curves(sandwich, x, AblationConfig(mode="unit"))
    real = Sandwich.jointly_perturbed_out_acts
    seen = []

    def spy(self, pre, in_idx, steps, out_idx, buffer=None, out=None):
        shape = None if buffer is None else tuple(buffer.shape)
        seen.append((steps.shape[0] * steps.shape[1], buffer, shape))
        return real(self, pre, in_idx, steps, out_idx, buffer=buffer, out=out)

    monkeypatch.setattr(Sandwich, "jointly_perturbed_out_acts", spy)
    per_token = 1 + (5 - 1) * (1 + 3 * 3)
    for budget in (1 << 34, 60_000, 1):
        seen.clear()
        got = joint_curves(sandwich, x, AblationConfig(mode="unit", memory_budget=budget))
        assert got.exited.dtype == torch.bool
        torch.testing.assert_close(got.act, whole.act, atol=1e-6, rtol=0)
        assert torch.equal(got.exited, whole.exited)
        assert sum(rows for rows, _, _ in seen) == len(x) * per_token, budget
        assert all(buffer is not None for _, buffer, _ in seen)
        assert len({buffer.untyped_storage().data_ptr() for _, buffer, _ in seen}) <= len(x)
        for rows, _, shape in seen:  # the shape it was handed (addmm may resize its out)
            assert shape == (rows, pair.d_sae_out)


def test_orders_keep_rank_order_among_ties():
    """64 inputs whose |J| and |single diff| take three values: each order is Python's
    stable sort by its key (ties in rank order, descending too); the random order is one
    permutation shared by a token's output features (torch sorts ties stably only when asked,
    from about 32 values on)."""
    k_in = 64
    ranks = torch.arange(k_in)
    jac = torch.tensor([-0.1, 0.0, 0.1])[ranks % 3][None, None, :].expand(2, 2, k_in).clone()
    jac[1, 1] = -jac[1, 1]  # another sign, the same magnitudes
    single = (
        torch.tensor([0.0, 0.2, 0.4])[ranks * 7 % 5 % 3][None, None, :].expand(2, 2, k_in).clone()
    )
    orders = removal_orders(jac, single, torch.Generator().manual_seed(0))
    for t in range(2):
        for j in range(2):
            mag = [abs(float(v)) for v in jac[t, j]]
            dif = [abs(float(v)) for v in single[t, j]]
            want = (
                sorted(range(k_in), key=lambda i: mag[i]),
                sorted(range(k_in), key=lambda i: -mag[i]),
                sorted(range(k_in), key=lambda i: dif[i]),
            )
            for o in range(3):
                assert orders[t, o, j].tolist() == want[o], (t, j, ORDERS[o])
        assert sorted(orders[t, 3, 0].tolist()) == list(range(k_in))
        assert torch.equal(orders[t, 3, 0], orders[t, 3, 1])
