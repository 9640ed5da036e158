"""Downstream KL: the batched splice against an independent loop, and its figures by hand."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.ablation import AblationConfig, ablate
from jsae.analysis.downstream import (
    DOWNSTREAM_COLUMNS,
    KEEP_ORDERS,
    DownstreamKL,
    downstream_kl,
    fewer_than_random,
    kept_deltas,
    kl_areas,
    random_connections,
    splice_hook,
    spliced_logits,
)
from jsae.analysis.downstream_sweep import (
    DOWNSTREAM_SUMMARY_COLUMNS,
    downstream_results,
    summary_frame,
)
from jsae.analysis.effect import SUMMARY_COLUMNS
from jsae.analysis.joint import ORDERS, joint_curves
from jsae.analysis.report import prompt_curves, prompt_downstream
from jsae.loading import Source
from jsae.pair import hook_out_name
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair
from tests.reference import downstream_loop

PROMPT = "The quick brown fox jumps over the lazy dog. def f(x): return x"
K = 6


def _setup(positions=None, mode="zero", apply_b_dec_to_input=True, n_layers=3):
    model = tiny_model(n_layers=n_layers)
    pair = tiny_pair(model, layer=1, d_sae=48, k=K, apply_b_dec_to_input=apply_b_dec_to_input)
    tokens = tokenize(model, PROMPT).tokens[:12]
    positions = torch.arange(1, len(tokens)) if positions is None else torch.tensor(positions)
    x = mlp_inputs(model, tokens, 1)
    curves = joint_curves(Sandwich(model, pair), x[positions], AblationConfig(mode=mode), positions)
    return model, pair, tokens, x, curves


def test_keeping_every_input_changes_nothing():
    model, pair, tokens, _, curves = _setup()
    deltas = kept_deltas(curves, pair.sae_out.W_dec)
    assert deltas.shape == (len(KEEP_ORDERS), K + 1, curves.n_tokens, model.cfg.d_model)
    assert (deltas[:, K] == 0).all(), "m = k_in: mlp_out' == mlp_out exactly"
    assert (deltas[:, :K].abs().amax(-1) > 0).any(), "fewer kept inputs move the MLP output"
    clean = model(tokens[None])
    spliced = spliced_logits(model, 1, tokens, curves.positions, deltas[0, K][None])
    assert torch.equal(spliced, clean), "the spliced model with nothing changed is the clean run"
    result = downstream_kl(model, pair, tokens, curves)
    assert (result.per_position[..., K] == 0).all()
    table = result.table
    assert (table[table["m_kept"] == K]["kl_mean"] == 0).all()
    assert (table[table["m_kept"] < K]["kl_mean"] > 0).all()
    # every order keeps nothing at m = 0: the same row, the same KL
    none = table[table["m_kept"] == 0]["kl_mean"].to_numpy()
    assert np.allclose(none, none[0], rtol=1e-9)


@pytest.mark.parametrize("apply_b_dec_to_input", [True, False])
@pytest.mark.parametrize("mode", ["unit", "zero"])
def test_kl_equals_an_encode_decode_loop(mode, apply_b_dec_to_input):
    """A few (order, m) through sae-lens's encode/decode per token and the model's own hook."""
    model, pair, tokens, x, curves = _setup(mode=mode, apply_b_dec_to_input=apply_b_dec_to_input)
    result = downstream_kl(model, pair, tokens, curves)
    positions = curves.positions.tolist()
    for order, m in (("jacobian", 0), ("jacobian", 4), ("oracle", 2), ("random", 1), ("random", 5)):
        o = ORDERS.index(order)
        removed = {
            (p, int(curves.out_idx[t, r])): [
                int(curves.in_idx[t, i]) for i in curves.order[t, o, r, : K - m].tolist()
            ]
            for t, p in enumerate(positions)
            for r in range(curves.k_out)
        }
        want = downstream_loop(model, pair, tokens, x, positions, removed, mode).numpy()
        got = result.per_position[:, KEEP_ORDERS.index(order), m]
        assert want.max() > 1e-4, "the reference moves the prediction"
        assert got == pytest.approx(want, abs=1e-5, rel=1e-4), (order, m)
        mean = result.table.set_index(["order", "m_kept"]).loc[(order, m), "kl_mean"]
        assert mean == pytest.approx(want.mean(), abs=1e-5, rel=1e-4)


def test_positions_not_ablated_keep_their_clean_mlp_output():
    model, pair, tokens, _, curves = _setup(positions=[3, 5, 6])
    deltas = kept_deltas(curves, pair.sae_out.W_dec)[:, 2].contiguous()  # 3 orders, 2 kept
    name = hook_out_name(1)
    _, cache = model.run_with_cache(tokens[None], names_filter=[name])
    clean = cache[name][0]
    seen = []
    batch = tokens[None].expand(len(deltas), -1)
    logits = model.run_with_hooks(
        batch,
        fwd_hooks=[(name, splice_hook(curves.positions, deltas)),
                   (name, lambda value, hook: seen.append(value.clone()))],
    )  # fmt: skip
    after = seen[0]
    others = [p for p in range(len(tokens)) if p not in (3, 5, 6)]
    assert 0 in others, "BOS is not ablated"
    assert torch.equal(after[:, others], clean[others].expand(len(deltas), -1, -1))
    assert torch.allclose(after[:, [3, 5, 6]], clean[[3, 5, 6]] + deltas, atol=1e-6)
    assert not torch.allclose(after[:, [3, 5, 6]], clean[[3, 5, 6]], atol=1e-4)
    # attention is causal: the positions before the first ablated one predict as before
    clean_logits = model(tokens[None])[0]
    assert torch.allclose(logits[:, :3], clean_logits[:3], atol=1e-5)
    assert not torch.allclose(logits[:, 3:], clean_logits[3:], atol=1e-4)


def test_an_ablation_result_leaves_bos_out_and_batches_do_not_matter():
    model = tiny_model()
    pair = tiny_pair(model, layer=1, d_sae=48, k=K)
    result = ablate(model, pair, PROMPT, config=AblationConfig(mode="zero"), max_tokens=10)
    curves = prompt_curves(model, pair, result)
    assert 0 not in curves.positions.tolist()
    one = prompt_downstream(model, pair, result, curves)
    assert one.n_positions == result.n_tokens == len(curves.positions)
    tiny_budget = downstream_kl(model, pair, result.prompt.tokens, curves, memory_budget=1)
    assert np.allclose(one.per_position, tiny_budget.per_position, rtol=1e-5, atol=1e-9)
    assert prompt_downstream(model, pair, result) == one


def _made_up(kl: dict[str, list[float]], k_out: int) -> pd.DataFrame:
    k_in = len(kl["random"]) - 1
    rows = [
        (order, m, m * k_out, m / k_in, 1, v, v)
        for order, values in kl.items()
        for m, v in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=list(DOWNSTREAM_COLUMNS))


def test_areas_by_hand():
    # two positions whose mean KL is [0.9, 0.3, 0] (jacobian), [0.9, 0.6, 0] (others)
    per_position = np.zeros((2, 3, 3))
    per_position[:, :, 0] = [[0.8] * 3, [1.0] * 3]
    per_position[:, 0, 1] = [0.2, 0.4]
    per_position[:, 1:, 1] = [[0.5, 0.5], [0.7, 0.7]]
    result = DownstreamKL.of(per_position, k_out=3)
    assert (result.k_in, result.n_positions) == (2, 2)
    table = result.table
    assert list(table.columns) == list(DOWNSTREAM_COLUMNS)
    assert table["kept_connections"].tolist() == [0, 3, 6] * 3
    assert table["fraction"].tolist() == [0, 0.5, 1] * 3
    # trapezoids over kept connections c = 0, 3, 6
    assert result.area["jacobian"] == pytest.approx(3 * (0.9 + 0.3) / 2 + 3 * 0.3 / 2)  # 2.25
    assert result.area["random"] == pytest.approx(3 * (0.9 + 0.6) / 2 + 3 * 0.6 / 2)  # 3.15
    # relative: over c / (k_in k_out) = c / 6
    assert result.relative_area["jacobian"] == pytest.approx(2.25 / 6)
    assert result.relative_area["oracle"] == pytest.approx(3.15 / 6)
    absolute, relative = kl_areas(_made_up({"random": [1.0, 0.5, 0.25, 0.0]}, k_out=2))
    assert absolute["random"] == pytest.approx(2 * (0.75 + 0.375 + 0.125))
    assert relative["random"] == pytest.approx((0.75 + 0.375 + 0.125) / 3)


def test_fewer_than_random_where_the_answer_is_known():
    m = np.arange(9)
    # K_jacobian(m) = K_random(2m): random needs exactly twice the connections
    # (m = 5..7 fall below the random curve's range and are left out)
    table = _made_up({"jacobian": list(np.exp(-m / 2)), "random": list(np.exp(-m / 4))}, 2)
    assert fewer_than_random(table, "jacobian") == 2.0
    assert fewer_than_random(table, "random") == 1.0
    # linear random curve 1 - c/20, c = 2m: an order with K(m) = 1 - 3m/20 reaches each KL
    # with 2m connections where random needs 3m (between random's budgets for odd m)
    linear = {
        "jacobian": [*(1 - 3 * m[:6] / 20), 0.1, 0.05, 0.0],
        "random": list(1 - m / 10),  # 1 - c/20 down to 0.2 at c = 16
    }
    table = _made_up(linear, 2)
    assert fewer_than_random(table, "jacobian") == pytest.approx(1.5)
    # random 1 - c/4 needs 4 (1 - K) connections: ratios 2, 1.5, 4/3 at m = 1, 2, 3
    table = _made_up({"jacobian": [1.0, 0.5, 0.25, 0.0, 0.0], "random": [1, 0.75, 0.5, 0.25, 0]}, 1)
    assert fewer_than_random(table, "jacobian") == 1.5, "the median, not the mean"
    # nothing in range: NaN
    table = _made_up({"jacobian": [1.0, 2.0, 2.0, 0.0], "random": [1.0, 0.5, 0.2, 0.0]}, 1)
    assert math.isnan(fewer_than_random(table, "jacobian"))


def test_random_connections_reads_the_lower_monotone_envelope():
    kept, kl = np.arange(5.0), np.array([1.0, 0.5, 0.7, 0.2, 0.1])  # envelope 1 .5 .5 .2 .1
    got = random_connections(np.array([0.6, 0.5, 0.35, 0.1, 1.0, 1.2, 0.05]), kept, kl)
    want = [0.8, 1.0, 2.5, 4.0, 0.0, np.nan, np.nan]  # raw crossing for 0.35 would be 2.7
    assert np.allclose(got, want, equal_nan=True)


def test_sums_merge_exactly_and_the_summary_names_every_figure():
    # KL_o(m) = r_p (3 - m) scale_o per position p: the jacobian curve sits at half random's
    gen = np.random.default_rng(0)
    scale = np.array([0.5, 0.25, 1.0])[:, None] * (3 - np.arange(4))  # orders, m
    a, b = gen.random((5, 1, 1)) ** 3 * scale, gen.random((7, 1, 1)) ** 3 * scale
    merged = DownstreamKL.of(a, 2).merge(DownstreamKL.of(b, 2))
    whole = DownstreamKL.of(np.concatenate([a, b]), 2)
    assert merged == whole
    assert np.array_equal(merged.per_position, whole.per_position)
    assert merged.n_positions == 12
    assert np.allclose(merged.table["kl_mean"], np.concatenate([a, b]).mean(0).ravel())
    summary = whole.summary()
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    values = summary.set_index("statistic")["value"]
    assert values["downstream_positions"] == 12
    assert values["downstream_kl_area_oracle"] == whole.area["oracle"]
    # random reaches K_jacobian(m) = K_random(1.5 + m / 2): ratios 2 (m = 1), 1.25 (m = 2)
    assert whole.fewer_than_random["jacobian"] == pytest.approx(1.625)
    assert values["downstream_fewer_than_random_jacobian"] == whole.fewer_than_random["jacobian"]
    assert "downstream_fewer_than_random_random" not in values


def test_a_source_sweep_merges_rows_and_reads_each_pairs_own_model():
    model = tiny_model()
    randomized = tiny_model()
    with torch.no_grad():
        for p in randomized.parameters():
            p.copy_(torch.randn_like(p) * p.std().clamp(min=0.1))
    pairs = {
        "jsae": {1: tiny_pair(model, 1, d_sae=48, k=4)},
        "jsae_randomized": {1: tiny_pair(randomized, 1, d_sae=48, k=4, kind="jsae_randomized")},
    }
    source = Source("tiny", model, pairs, pair_models={("jsae_randomized", 1): randomized})
    rows = torch.stack(
        [tokenize(model, PROMPT).tokens[:9], tokenize(model, "A b c d e f").tokens[:9]]
    )
    results = downstream_results(source, rows, modes=("unit",))
    assert set(results) == {(1, "jsae", "unit"), (1, "jsae_randomized", "unit")}
    for kind in ("jsae", "jsae_randomized"):
        own = source.model_for(1, kind)
        pair = source.pair(1, kind)
        parts = []
        for row in rows:
            positions = torch.arange(1, len(row))  # BOS left out
            x = mlp_inputs(own, row, 1)[positions]
            curves = joint_curves(Sandwich(own, pair), x, AblationConfig(mode="unit"), positions)
            parts.append(downstream_kl(own, pair, row, curves))
        assert results[(1, kind, "unit")] == parts[0].merge(parts[1]), kind
    frame = summary_frame(results)
    assert list(frame.columns) == list(DOWNSTREAM_SUMMARY_COLUMNS)
    assert len(frame) == 2 * len(KEEP_ORDERS)
    one = frame[(frame["kind"] == "jsae") & (frame["order"] == "jacobian")].iloc[0]
    whole = results[(1, "jsae", "unit")]
    assert one["positions"] == 16
    assert one["area"] == whole.area["jacobian"]
    assert one["fewer_than_random"] == whole.fewer_than_random["jacobian"] or (
        math.isnan(one["fewer_than_random"]) and math.isnan(whole.fewer_than_random["jacobian"])
    )
