"""Certified pruning's parts on a bare output SAE (``jsae.prune.Pruner``, its ``LowRank``)
against independent references: the full scan (``reselect_full`` on every feature's
pre-activation), products in float64, loops over the low-rank bound's cuts, the documented
rules of when a block prunes, and the engine's bookkeeping counted by spies on its calls."""

import dataclasses

import pytest
import torch

import jsae.prune
import jsae.prune_lowrank
import jsae.prune_policy
from jsae.prune import Pruner
from jsae.prune_lowrank import LowRank
from jsae.prune_policy import BASIS_ROWS, CUT_QUANTILES, SAMPLE, cost
from jsae.reselect import Perturbed, read_tracked, reselect_full
from tests.helpers import tiny_sae

K = 4


def setup(d_model=32, d_sae=512, tokens=6, rows=4, step=0.3, shift=0.0, seed=0):
    """An output SAE (k 4), its pruner, tokens' inputs y_t and rows y_t + δ_r (δ of norm
    about ``step``), and each token's top k as the tracked features."""
    torch.manual_seed(seed)
    sae = tiny_sae(d_model, d_sae, K, None)
    with torch.no_grad():
        sae.b_enc.sub_(shift)
    y_tok = torch.randn(tokens, d_model)
    delta = torch.randn(tokens, rows, d_model)
    y_rows = y_tok[:, None, :] + step * delta / delta.norm(dim=-1, keepdim=True)
    out_idx = torch.topk(y_tok @ sae.W_enc.detach() + sae.b_enc.detach(), K).indices
    return sae, Pruner(sae), y_rows, y_tok, out_idx


def full_scan(sae, y_rows, out_idx) -> Perturbed:
    pre = (y_rows @ sae.W_enc + sae.b_enc).detach()
    return reselect_full(pre, out_idx, K)


def assert_same(got: Perturbed, want: Perturbed) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def spy(monkeypatch, owner, name, record) -> None:
    """Wrap ``owner.name`` so that each call appends ``record(*args)`` to the returned list."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(record(*args, **kwargs))
        return real(*args, **kwargs)

    calls: list = []
    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_stats_count_each_block_once(always, monkeypatch):
    """Every counter of ``PruneStats`` against the calls the engine makes: a pruned block with
    heavy rows (huge steps) and a block that tries the bound and takes the full scan. The
    same blocks again double every counter; ``reset`` zeroes them."""
    sae, pruner, y_rows, y_tok, out_idx = setup(tokens=5, rows=6)
    y_rows[:, -2:] = y_tok[:, None, :] + 1e3 * torch.randn(5, 2, 32)  # heavy
    huge = y_tok[:, None, :] + 1e3 * torch.randn(5, 6, 32)  # every row heavy: never pays
    blocks = spy(monkeypatch, Pruner, "reselect", lambda self, r, *a: r.shape[0] * r.shape[1])
    finished = spy(
        monkeypatch,
        Pruner,
        "_finish",
        lambda self, r, o, f, t, heavy, *a: (r.shape[0] * r.shape[1], f.shape[1], int(heavy.sum())),
    )
    redone = spy(monkeypatch, Pruner, "_scan_rows", lambda self, r, b: len(r))
    full = spy(monkeypatch, Pruner, "_full", lambda self, r, o, scan, out: scan.numel())
    for rows in (y_rows, huge):
        assert_same(pruner.reselect(rows, y_tok, out_idx), full_scan(sae, rows, out_idx))
    st = dataclasses.replace(pruner.stats)
    assert len(finished) == 1 and len(full) == 1 and redone[0] > 0
    (light_rows, columns, heavy), n_redo = finished[0], sum(redone)
    assert (st.blocks, st.rows, st.features) == (2, sum(blocks), sum(blocks) * 512)
    assert st.tried == sum(blocks)  # both blocks computed the bound
    assert 0 < st.bound_candidates <= st.tried * 512
    assert st.pruned_blocks == 1 and heavy > 0
    assert (st.heavy_rows, st.fallback_rows) == (heavy, n_redo - heavy)
    assert st.pruned_rows == light_rows - n_redo
    assert st.computed == light_rows * columns + n_redo * 512 + full[0]
    for rows in (y_rows, huge):
        pruner.reselect(rows, y_tok, out_idx)
    for f in dataclasses.fields(st):
        assert getattr(pruner.stats, f.name) == 2 * getattr(st, f.name), f.name
    pruner.stats.reset()
    assert pruner.stats == jsae.prune_policy.PruneStats()


def test_failed_certificates_add_up(always, monkeypatch):
    """With θ above every value no row is certified: each block's rows all fall back."""
    sae, pruner, y_rows, y_tok, out_idx = setup()
    monkeypatch.setattr(pruner, "margin", lambda y, d, p: torch.full_like(d, -1e3))
    for _ in range(2):
        assert_same(pruner.reselect(y_rows, y_tok, out_idx), full_scan(sae, y_rows, out_idx))
    assert pruner.stats.fallback_rows == 2 * y_rows.shape[0] * y_rows.shape[1]


def test_paying_blocks_are_all_pruned_and_failing_ones_back_off(monkeypatch):
    """With the real ``MAX_SKIP``: blocks that pay are pruned one after another; blocks that
    never pay try the bound on the 1st, 3rd, 6th… (skipping 1, 2, 4… blocks between)."""
    for name, value in [("GATHERED_COST", 0.0), ("SCAN_COST", 0.0), ("WIN", 1.0)]:
        monkeypatch.setattr(jsae.prune_policy, name, value)
    monkeypatch.setattr(jsae.prune_policy, "PROBE_TOKENS", 1 << 30)
    sae, pruner, y_rows, y_tok, out_idx = setup()
    for _ in range(4):
        assert_same(pruner.reselect(y_rows, y_tok, out_idx), full_scan(sae, y_rows, out_idx))
    assert pruner.stats.pruned_blocks == pruner.stats.blocks == 4
    pruner.stats.reset()
    huge = y_tok[:, None, :] + 1e3 * torch.randn(y_rows.shape)
    for _ in range(6):
        assert_same(pruner.reselect(huge, y_tok, out_idx), full_scan(sae, huge, out_idx))
    assert pruner.stats.tried == 3 * huge.shape[0] * huge.shape[1]  # blocks 1, 3 and 6
    assert pruner.stats.pruned_blocks == 0


def test_no_pruning_where_the_strongest_fill_the_searched_prefix(always):
    """d_sae 64, k 4: the 2k strongest are as many as the Cauchy–Schwarz prefix searches
    (d_sae / 8): nothing to prune, so no block tries."""
    sae, pruner, y_rows, y_tok, out_idx = setup(d_sae=64)
    assert_same(pruner.reselect(y_rows, y_tok, out_idx), full_scan(sae, y_rows, out_idx))
    assert (pruner.stats.tried, pruner.stats.pruned_blocks) == (0, 0)


@pytest.mark.parametrize("d_model", [16, 24, 32])
def test_the_low_rank_bound_runs_exactly_where_documented(d_model, always, monkeypatch):
    """``BASIS_ROWS``: with p = d_model / 8 directions, at least 8p rows per token and
    p + 3 ≤ d_model / 4 (so d_model 24 is the smallest)."""
    calls = spy(monkeypatch, LowRank, "candidates", lambda *a: 1)
    p = d_model // 8
    for rows in (BASIS_ROWS * p - 1, BASIS_ROWS * p):
        sae, pruner, y_rows, y_tok, out_idx = setup(d_model=d_model, tokens=3, rows=rows)
        pruner.bounds = ("low_rank",)
        calls.clear()
        assert_same(pruner.reselect(y_rows, y_tok, out_idx), full_scan(sae, y_rows, out_idx))
        assert bool(calls) == (rows >= BASIS_ROWS * p and d_model >= 24), rows


def test_the_low_rank_bound_with_fewer_than_k_positive_values(always):
    """Encoder biases lowered by 3 (θ below 0 on most rows): the low-rank bound's candidates
    still hold each row's top k."""
    sae, pruner, y_rows, y_tok, out_idx = setup(tokens=3, rows=40, step=1.0, shift=3.0)
    pruner.bounds = ("low_rank",)
    want = full_scan(sae, y_rows, out_idx)
    assert ((want.acts == 0) & ~want.exited).any(), "some kept features are not positive"
    assert_same(pruner.reselect(y_rows, y_tok, out_idx), want)
    assert pruner.stats.pruned_rows > 0


def test_union_against_float64_products(monkeypatch):
    """``LowRank._union`` (a slice of features at a time, in a scan buffer holding NaN)
    against max over rows of ``left @ right`` ≥ 0 in float64; small integers make some
    maxima exactly 0."""
    monkeypatch.setattr(jsae.prune_lowrank, "CHUNK_BYTES", 4 * 3 * 5 * 7)  # 7 features a slice
    _, pruner, *_ = setup()
    gen = torch.Generator().manual_seed(4)
    left = torch.randint(-2, 3, (3, 5, 6), generator=gen).float()
    right = torch.randint(-2, 3, (3, 6, 512), generator=gen).float()
    scan = torch.full((3, 5, 512), torch.nan)
    got = pruner.low_rank._union(left, right, scan)
    best = (left.double() @ right.double()).amax(1)
    assert (best == 0).any() and (best > 0).any() and (best < 0).any()
    assert torch.equal(got, best >= 0)


def test_exact_values_in_a_small_space():
    """``Pruner._exact`` against float64 products: without a space, and in a space that fits
    one token's encoder columns at a time (its values then live in that space)."""
    sae, pruner, y_rows, _, _ = setup()
    features = torch.randint(0, 512, (6, 9), generator=torch.Generator().manual_seed(5))
    W, b = sae.W_enc.detach().double(), sae.b_enc.detach().double()
    want = torch.einsum("trd,tdc->trc", y_rows.double(), W[:, features].permute(1, 0, 2))
    want = want + b[features][:, None, :]
    space = torch.full((6 * 4 * 9 + 9 * 32,), torch.nan)
    for got in (pruner._exact(y_rows, features), pruner._exact(y_rows, features, space)):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    assert got.data_ptr() == space.data_ptr()


def sampled_cut_loop(sample, counts, bound_cost, d_sae, strongest):
    """The cheapest of the cuts at ``CUT_QUANTILES`` of the counts, row by row and token by
    token: light rows have counts ≤ the cut and compute the union of the features any light
    row of their token admits on the sample (the largest token's, at least ``strongest``)."""
    tokens, rows, s = sample.shape
    flat = sorted(counts.flatten().tolist())
    best, heavy = jsae.prune_policy.WIN, None
    for fraction in CUT_QUANTILES:
        cut = flat[min(len(flat) - 1, int(fraction * len(flat)))]
        if cut == float("inf"):
            continue
        light = [[counts[t, r].item() <= cut for r in range(rows)] for t in range(tokens)]
        union = max(
            sum(any(light[t][r] and sample[t, r, f] for r in range(rows)) for f in range(s))
            for t in range(tokens)
        )
        share = sum(not v for row in light for v in row) / (tokens * rows)
        value = cost(max(strongest, union * SAMPLE), d_sae, share, bound_cost)
        if value < best:
            best, heavy = value, torch.tensor([[not v for v in row] for row in light])
    return heavy


def test_sampled_cut_against_a_loop(monkeypatch):
    monkeypatch.setattr(jsae.prune_policy, "WIN", 1.5)
    _, pruner, *_ = setup()
    gen = torch.Generator().manual_seed(6)
    found = 0
    for trial in range(30):
        density = torch.rand(3, 8, 1, generator=gen) ** 3
        sample = torch.rand(3, 8, 32, generator=gen) < density
        counts = (sample.sum(-1) * SAMPLE).float()
        if trial % 2:  # rows whose bound is unknown (never light)
            counts[torch.rand(3, 8, generator=gen) < 0.1] = torch.inf
        bound_cost = 0.3 * trial / 30
        got = pruner.low_rank._sampled_cut(sample, counts, bound_cost)
        want = sampled_cut_loop(sample, counts, bound_cost, 512, pruner.strongest)
        assert (got is None) == (want is None)
        if want is not None:
            assert torch.equal(got, want)
            found += 1
    assert 0 < found < 30
    # nested rows (row r admits sampled features 0..r): no row is worth the full scan
    nested = torch.arange(32)[None, None, :] <= torch.arange(8)[None, :, None]
    counts = (nested.sum(-1) * SAMPLE).float()
    heavy = pruner.low_rank._sampled_cut(nested, counts, 0.0)
    assert torch.equal(heavy, sampled_cut_loop(nested, counts, 0.0, 512, pruner.strongest))
    assert not heavy.any()
    assert pruner.low_rank._sampled_cut(nested, counts, 1.0) is None  # the bound costs too much


def test_a_nan_newcomer_is_argmax_s_choice():
    """A NaN value ranks above every number (``torch.topk`` and ``argmax`` alike): a newcomer
    whose pre-activation is NaN is the one that entered."""
    out_idx = torch.tensor([[0, 1]])
    features = torch.tensor([[[0, 5, 3, 7]]])
    top_values = torch.tensor([[[2.0, torch.nan, 1.5, 1.0]]])
    got = read_tracked(torch.tensor([[[2.0, 0.5]]]), top_values, features, out_idx)
    assert got.entered.item() == 5


@pytest.mark.parametrize("extra", [0, 1])
def test_a_probe_runs_on_blocks_of_more_than_twice_its_tokens(extra, monkeypatch):
    """Where nothing pays: a block of 2 ``PROBE_TOKENS`` tokens tries its bound on all of
    them, one more token and only ``PROBE_TOKENS`` of them are tried."""
    monkeypatch.setattr(jsae.prune_policy, "WIN", 0.0)
    monkeypatch.setattr(jsae.prune_policy, "MAX_SKIP", 0)
    n = jsae.prune_policy.PROBE_TOKENS
    sae, pruner, y_rows, y_tok, out_idx = setup(tokens=2 * n + extra)
    assert_same(pruner.reselect(y_rows, y_tok, out_idx), full_scan(sae, y_rows, out_idx))
    assert pruner.stats.tried == (n if extra else 2 * n) * y_rows.shape[1]
