"""Certified pruning of the top-k re-selection against the full scan (the brute-force path,
itself checked against the notebook loop) and against the loops directly: random pairs, the
bundled pairs, and the cases a bound has to survive (a bound attained at the k-th value,
ties, huge steps, zero mode, fewer than k positive pre-activations, a failed certificate)."""

import numpy as np
import pytest
import torch

import jsae.prune
import jsae.prune_lowrank
import jsae.prune_policy
from jsae.ablation import AblationConfig, ablate_activations
from jsae.analysis.joint import ORDERS, joint_curves
from jsae.demo.measure import load_heldout_sample
from jsae.demo.settings import HELDOUT_FILE
from jsae.loading import DEMO_DIR, load_source
from jsae.prompt import mlp_inputs, tokenize
from jsae.reselect import Perturbed, read_tracked
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair
from tests.reference import joint_loop, notebook_loop

PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x + 1"
ATOL = RTOL = 1e-6  # float32 values computed by differently shaped products
K = 4


def wide(shift: float = 0.0, act_fn: str = "gelu"):
    """A model with d_model 32 and a pair with d_sae 512, k 4 (so that 2k is a small part of
    d_sae, as in real pairs), b_dec applied to the input; ``shift`` lowers every encoder bias."""
    torch.manual_seed(0)
    model = tiny_model(act_fn=act_fn, d_model=32, d_mlp=128)
    pair = tiny_pair(model, layer=1, d_sae=512, k=K, apply_b_dec_to_input=True)
    with torch.no_grad():
        pair.sae_in.b_enc.sub_(shift)
        pair.sae_out.b_enc.sub_(shift)
    x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)
    return model, pair, x


def assert_same(got: Perturbed, want: Perturbed) -> None:
    torch.testing.assert_close(got.pre, want.pre, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(got.acts, want.acts, atol=ATOL, rtol=RTOL)
    assert torch.equal(got.exited, want.exited)
    assert torch.equal(got.entered, want.entered)


def assert_same_table(got, want) -> None:
    """Two engines' connections: the new activation and pre-activation of every connection
    (diff and pre_diff added back to the same out_act), exits and entries."""
    for name in ("diff", "pre_diff"):
        a, b = getattr(got, name) + got.out_act, getattr(want, name) + want.out_act
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)
    assert torch.equal(got.exited, want.exited) and torch.equal(got.entered, want.entered)


def both(model, pair):
    """The pruned engine (joint rows pruned too) and the full scan."""
    return Sandwich(model, pair, prune_joint=True), Sandwich(model, pair, prune=False)


def single_rows(sandwich: Sandwich, base, s, out_idx=None) -> Perturbed:
    out_idx = base.out_idx if out_idx is None else out_idx
    return sandwich.perturbed_out_acts(base.pre, base.in_idx, s, out_idx)


@pytest.mark.parametrize(
    ("mode", "scale"), [("unit", 1.0), ("zero", 1.0), ("scale", -0.5), ("scale", 0.25)]
)
@pytest.mark.parametrize("forced", [True, False], ids=["always", "when-it-pays"])
def test_single_connection_rows_equal_the_full_scan(mode, scale, forced, request):
    if forced:
        request.getfixturevalue("always")
    model, pair, x = wide()
    pruned, full = both(model, pair)
    base = full(x)
    s = AblationConfig(mode=mode, scale=scale).perturbation(base.in_act)
    assert_same(single_rows(pruned, base, s), single_rows(full, base, s))
    stats = pruned.pruner.stats
    assert stats.rows == base.in_idx.numel()
    if forced:
        assert stats.pruned_rows > 0


def basis_calls(monkeypatch) -> list[int]:
    """Counts the low-rank bounds computed (each call appends its block's rows)."""
    calls, real = [], jsae.prune_lowrank.LowRank.bound_factors

    def spy(self, z, delta, *args):
        calls.append(delta.shape[0] * delta.shape[1])
        return real(self, z, delta, *args)

    monkeypatch.setattr(jsae.prune_lowrank.LowRank, "bound_factors", spy)
    return calls


@pytest.mark.parametrize("mode", ["unit", "zero"])
def test_joint_rows_equal_the_full_scan_through_the_low_rank_bound(mode, always, monkeypatch):
    """Rows removing random sets of a token's inputs together (many rows per token, so the
    low-rank bound runs), and the joint curves through joint_curves."""
    calls = basis_calls(monkeypatch)
    model, pair, x = wide()
    pruned, full = both(model, pair)
    pruned.pruner.bounds = ("low_rank",)
    base = full(x)
    s = AblationConfig(mode=mode).perturbation(base.in_act)
    gen = torch.Generator().manual_seed(1)
    removed = torch.rand(len(x), 24 * K, K, generator=gen) < 0.5
    steps = removed * s[:, None, :]
    got = pruned.jointly_perturbed_out_acts(base.pre, base.in_idx, steps, base.out_idx)
    want = full.jointly_perturbed_out_acts(base.pre, base.in_idx, steps, base.out_idx)
    assert_same(got, want)
    assert calls, "the low-rank bound ran"
    assert pruned.pruner.stats.pruned_rows > 0
    config = AblationConfig(mode=mode)
    got, want = joint_curves(pruned, x[:6], config), joint_curves(full, x[:6], config)
    torch.testing.assert_close(got.act, want.act, atol=ATOL, rtol=RTOL)
    assert torch.equal(got.exited, want.exited)


def test_pruned_engine_equals_the_notebook_loop(always):
    """The pruned engine against the independent references directly: the notebook loop
    (one TransformerLens MLP + sae-lens encode per connection) and the joint loop."""
    model, pair, x = wide()
    sandwich = Sandwich(model, pair, prune_joint=True)
    got = ablate_activations(sandwich, x[:6], AblationConfig(mode="zero"))
    expected = notebook_loop(model, pair, x[:6], mode="zero")
    keys = zip(
        got.position.tolist(), got.in_feature.tolist(), got.out_feature.tolist(), strict=True
    )
    want = [expected[key]["diff"] for key in keys]
    np.testing.assert_allclose(got.diff.numpy(), want, atol=1e-5, rtol=0)
    assert sandwich.pruner.stats.pruned_rows > 0
    curves = joint_curves(sandwich, x[:2], AblationConfig(mode="zero"))
    for t in range(2):
        for o in range(len(ORDERS)):
            for r, j in enumerate(curves.out_idx[t].tolist()):
                for m in range(K + 1):
                    ids = curves.in_idx[t, curves.order[t, o, r, :m]].tolist()
                    loop = joint_loop(model, pair, x, {(t, j): ids}, "zero")[(t, j)]
                    assert curves.diff[t, o, r, m].item() == pytest.approx(loop, abs=1e-5)


@pytest.mark.parametrize("budget", [1 << 14, 1 << 17])
def test_blocks_of_pieces_of_tokens_equal_the_full_scan(budget, always):
    model, pair, x = wide()
    pruned, full = both(model, pair)
    config = AblationConfig(mode="unit", memory_budget=budget)
    assert_same_table(ablate_activations(pruned, x, config), ablate_activations(full, x, config))


def test_the_bundled_pairs_equal_the_full_scan(always):
    source = load_source("demo")
    tokens = load_heldout_sample(DEMO_DIR / HELDOUT_FILE)[0]
    pruned_rows = 0
    for kind in ("jsae", "plain"):
        for layer in source.layers(kind):
            model, pair = source.model_for(layer, kind), source.pair(layer, kind)
            x = mlp_inputs(model, tokens, layer)[1:25]
            pruned, full = both(model, pair)
            for mode in ("unit", "zero"):
                config = AblationConfig(mode=mode)
                got, want = (
                    ablate_activations(pruned, x, config),
                    ablate_activations(full, x, config),
                )
                assert_same_table(got, want)
            got, want = joint_curves(pruned, x[:2], config), joint_curves(full, x[:2], config)
            torch.testing.assert_close(got.act, want.act, atol=ATOL, rtol=RTOL)
            assert torch.equal(got.exited, want.exited)
            pruned_rows += pruned.pruner.stats.pruned_rows
    assert pruned_rows > 0


def test_a_bound_attained_at_the_kth_value_lets_the_feature_enter(always):
    """Cauchy–Schwarz is attained when δ is parallel to w_m: give an inactive feature m the
    direction of one row's δ and the largest encoder norm, and the bias that puts its new
    pre-activation just above that row's k-th value. Its bound equals its value, which sits
    on the threshold: the pruned row must still let m in, as the full scan does."""
    model, pair, x = wide()
    full = Sandwich(model, pair, prune=False)
    base = full(x[3:4])
    s = torch.full_like(base.in_act, 0.5)
    row_pre = base.pre[:, None, :] - s[..., None] * full.dec_in_W_in[base.in_idx]
    delta = full.sae_in_from_pre(row_pre[0, 0]) - full.sae_in_from_pre(base.pre[0])
    sae = pair.sae_out
    with torch.no_grad():
        w_max = sae.W_enc.norm(dim=0).max()
        z = full.out_pre_from_pre(base.pre)[0]
        m = int(z.argmin())  # far below the top k before the perturbation
        sae.W_enc[:, m] = delta / delta.norm() * w_max
        sae.b_enc[m] = 0.0
        new = full.out_pre_from_pre(row_pre[0, 0])
        others = new.clone()
        others[m] = -torch.inf
        sae.b_enc[m] = torch.topk(others, K).values[-1] - new[m] + 1e-4
    pruned, full = both(model, pair)  # rebuilt on the changed encoder
    base = full(x[3:4])
    assert m not in base.out_idx[0].tolist()
    got, want = single_rows(pruned, base, s), single_rows(full, base, s)
    assert_same(got, want)
    after = full.out_pre_from_pre(row_pre[0, 0])
    assert m in torch.topk(after, K).indices.tolist() and want.exited[0, 0].any()
    assert pruned.pruner.stats.pruned_rows > 0


def test_ties_at_the_kth_value(always):
    """A copy of each token's k-th feature (same encoder column and bias) ties with it in
    every row. Values, exits and the ReLU agree with the full scan, and ``entered`` names a
    feature of the same pre-activation."""
    model, pair, x = wide()
    _, full = both(model, pair)
    base = full(x)
    with torch.no_grad():
        for t in range(len(x)):
            kth, spare = base.out_idx[t, -1], int(full.out_pre_from_pre(base.pre[t]).argmin())
            pair.sae_out.W_enc[:, spare] = pair.sae_out.W_enc[:, kth]
            pair.sae_out.b_enc[spare] = pair.sae_out.b_enc[kth]
    pruned, full = both(model, pair)
    base = full(x)
    s = AblationConfig(mode="unit").perturbation(base.in_act)
    got, want = single_rows(pruned, base, s), single_rows(full, base, s)
    torch.testing.assert_close(got.pre, want.pre, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(got.acts, want.acts, atol=ATOL, rtol=RTOL)
    assert torch.equal(got.exited, want.exited)
    # entered: the same feature, or the other twin of a tie that rounding split differently
    # (a gathered product of 4 rows per token does not round as the full scan's does)
    row_pre = base.pre[:, None, :] - s[..., None] * full.dec_in_W_in[base.in_idx]
    new = full.out_pre_from_pre(row_pre)
    differ = got.entered != want.entered
    assert (got.entered[differ] >= 0).all() and (want.entered[differ] >= 0).all()
    value = lambda e: new.gather(-1, e.clamp_min(0)[..., None])[..., 0]  # noqa: E731
    torch.testing.assert_close(value(got.entered), value(want.entered), atol=ATOL, rtol=RTOL)
    assert pruned.pruner.stats.pruned_rows > 0


def test_entered_names_the_lowest_of_equal_newcomers_whatever_the_order():
    """Two newcomers tie for the strongest: ``entered`` is the lower id, in any order the
    top k lists them (the pruned and the full scan list their top k differently)."""
    out_idx = torch.tensor([[0, 1]])
    for order in ([0, 7, 3, 5], [0, 3, 7, 5], [5, 7, 3, 0]):
        features = torch.tensor(order)[None, None, :]
        values = {0: 2.0, 3: 1.5, 7: 1.5, 5: 1.0}
        top_values = torch.tensor([[[values[f] for f in order]]])
        new_pre = torch.tensor([[[2.0, 0.5]]])
        got = read_tracked(new_pre, top_values, features, out_idx)
        assert got.entered.item() == 3 and got.exited.tolist() == [[[False, True]]]


def test_huge_steps_fall_back_and_mix_with_small_ones(always):
    """Steps from 0 to 1e6 along one input of one token in one block: small steps are
    pruned, huge ones admit every feature and take the full scan."""
    model, pair, x = wide()
    pruned, full = both(model, pair)
    base = full(x[2:3])
    steps = torch.tensor([[0.0, 1e-3, 0.3, 1.0, 3.0, 30.0, 1e3, 1e6, -1e6]])
    in_idx = base.in_idx[:, :1].expand_as(steps)
    got = pruned.perturbed_out_acts(base.pre, in_idx, steps, base.out_idx)
    want = full.perturbed_out_acts(base.pre, in_idx, steps, base.out_idx)
    assert_same(got, want)
    stats = pruned.pruner.stats
    assert stats.heavy_rows > 0 and stats.pruned_rows > 0


def test_fewer_than_k_positive_pre_activations(always):
    """Encoder biases lowered by 3: the row's k-th value is often negative, so the ReLU (the
    threshold's clamp at 0) and the k-th value itself must both come out right."""
    model, pair, x = wide(shift=3.0)
    pruned, full = both(model, pair)
    base = full(x)
    for mode in ("unit", "zero"):
        s = AblationConfig(mode=mode).perturbation(base.in_act)
        got, want = single_rows(pruned, base, s), single_rows(full, base, s)
        assert_same(got, want)
        kept_at_zero = (want.acts == 0) & ~want.exited
        assert kept_at_zero.any(), "some kept features are not positive"
    assert pruned.pruner.stats.pruned_rows > 0


def test_tracked_features_outside_the_candidates(always):
    """The dose-response reads any output feature: one far below the top k (no candidate:
    computed on its own) beside an active one."""
    model, pair, x = wide()
    pruned, full = both(model, pair)
    base = full(x[:5])
    low = full.out_pre_from_pre(base.pre).argmin(-1, keepdim=True)
    out_idx = torch.cat([low, base.out_idx[:, :1]], 1)
    s = torch.ones_like(base.in_act)
    assert_same(single_rows(pruned, base, s, out_idx), single_rows(full, base, s, out_idx))
    assert pruned.pruner.stats.pruned_rows > 0


def test_a_failed_certificate_falls_back_to_the_full_scan(always, monkeypatch):
    """With the margin turned against the certificate (θ above every value), no row can be
    certified: every row is recomputed by the full scan, and the results do not change."""
    model, pair, x = wide()
    pruned, full = both(model, pair)
    monkeypatch.setattr(pruned.pruner, "margin", lambda y, d, p: torch.full_like(d, -1e3))
    base = full(x)
    s = torch.ones_like(base.in_act)
    assert_same(single_rows(pruned, base, s), single_rows(full, base, s))
    stats = pruned.pruner.stats
    assert stats.fallback_rows == stats.rows > 0


@pytest.mark.parametrize("low_rank", [False, True])
def test_the_bound_holds_on_every_row_and_feature(low_rank):
    """ub_rm + τ_r ≥ z'_rm computed in float64, for every row and feature, with the basis of
    each token's principal directions (many rows per token) and without (Cauchy–Schwarz);
    and the low-rank bound is the tighter."""
    model, pair, x = wide()
    sandwich = Sandwich(model, pair)
    pruner = sandwich.pruner
    base = sandwich(x)
    steps = (torch.rand(len(x), 64, K, generator=torch.Generator().manual_seed(2)) < 0.5) * 3.0
    in_rows = sandwich.dec_in_W_in[base.in_idx]
    row_pre = base.pre[:, None, :] - steps @ in_rows
    y_rows, y_tok = sandwich.sae_in_from_pre(row_pre), sandwich.sae_in_from_pre(base.pre)
    z = y_tok @ pruner.W + pruner.b
    delta = y_rows - y_tok[:, None, :]
    delta_sq = delta.square().sum(-1)
    exact = y_rows.double() @ pruner.W.double() + pruner.b.double()
    tau = pruner.margin(y_tok.norm(dim=-1), delta_sq.sqrt(), pruner.rank)
    cs = z[:, None, :] + delta_sq.sqrt()[..., None] * pruner.norm_sq.sqrt()
    if low_rank:
        basis = pruner.low_rank.basis(delta)
        left, right = pruner.low_rank.bound_factors(
            z, delta, delta_sq, basis, torch.zeros_like(tau)
        )
        bound = left @ right
        assert (bound <= cs + tau[..., None]).float().mean() > 0.99
        assert (bound.double() - exact).median() < 0.5 * (cs.double() - exact).median()
    else:
        bound = cs
    assert ((bound + tau[..., None]).double() >= exact).all()


def test_a_probe_declines_a_block_on_a_few_of_its_tokens(monkeypatch):
    """Where nothing pays (WIN 0), a block of more than 2 PROBE_TOKENS tokens computes the
    bound on PROBE_TOKENS of its tokens only, then the full scan; where everything pays the
    probe lets the whole block through. The rows equal the full scan's either way."""
    monkeypatch.setattr(jsae.prune_policy, "MAX_SKIP", 0)
    model, pair, x = wide()
    assert len(x) > 2 * jsae.prune_policy.PROBE_TOKENS
    for win, tried in [(0.0, jsae.prune_policy.PROBE_TOKENS * K), (1.0, len(x) * K)]:
        monkeypatch.setattr(jsae.prune_policy, "WIN", win)
        monkeypatch.setattr(jsae.prune_policy, "GATHERED_COST", 0.0)
        pruned, full = both(model, pair)
        base = full(x)
        s = torch.ones_like(base.in_act)
        assert_same(single_rows(pruned, base, s), single_rows(full, base, s))
        stats = pruned.pruner.stats
        assert stats.tried == tried
        assert (stats.pruned_rows > 0) == (win > 0)


def test_the_default_engine_prunes_single_connection_rows_only(always):
    """``Sandwich()`` consults its pruner on single-connection rows and not on joint rows
    (opt-in there); ``prune_joint`` turns it on for joint rows alone."""
    model, pair, x = wide()
    for prune, prune_joint in [(True, False), (False, True)]:
        sandwich = Sandwich(model, pair, prune=prune, prune_joint=prune_joint)
        assert sandwich.prunes() == prune and sandwich.prunes(joint=True) == prune_joint
        base = sandwich(x)
        s = torch.ones_like(base.in_act)
        single_rows(sandwich, base, s)
        single = sandwich.pruner.stats.rows
        steps = torch.ones(len(x), 3, K) * s[:, None, :]
        sandwich.jointly_perturbed_out_acts(base.pre, base.in_idx, steps, base.out_idx)
        assert (single > 0) == prune
        assert (sandwich.pruner.stats.rows > single) == prune_joint
    assert Sandwich(model, pair, prune=False).pruner is None
