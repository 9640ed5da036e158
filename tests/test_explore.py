"""The explorer's page logic without Streamlit: URL state, runs, binning, misses, the
pairs compared and the token explorer's helpers."""

import hashlib
import io
import math
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from jsae import ablation, explore
from jsae.ablation import AblationConfig
from jsae.analysis import DEFAULT_TAU, analyse, effect_statistics, pair_health, verdict
from jsae.errors import InputError
from jsae.example_texts import DEFAULT_PROMPTS
from jsae.loading import Source
from jsae.prompt import mlp_inputs, tokenize
from jsae.sandwich import Sandwich
from jsae.stats import Tolerance
from jsae.table import DEFAULT_EPS, table_bytes
from tests.helpers import tiny_model, tiny_pairs

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def source(model):
    return Source("tiny", model, tiny_pairs(model))


def key(**kw):
    base = dict(
        source="tiny", model=None, layer=1, kind="jsae", mode="unit", scale=1.0, text=PROMPT
    )
    return explore.RunKey(**(base | kw))


def test_view_state_round_trips_through_query_params():
    prompts = {"Fox": PROMPT}
    state = explore.ViewState(
        source="/data/src",
        model="gpt2",
        layer=3,
        kind="plain",
        mode="scale",
        scale=0.25,
        eps=0.003,
        prompt="Fox",
        run=True,
        position=4,
        in_feature=12,
        out_feature=99,
    )
    params = explore.to_query_params(state)
    back, warnings = explore.parse_query_params(params, prompts, explore.ViewState())
    assert warnings == []
    assert back == state


def test_numbers_keep_their_precision_in_the_url():
    state = explore.ViewState(mode="scale", scale=0.123456789, eps=1.23456789e-4)
    back, _ = explore.parse_query_params(explore.to_query_params(state), {})
    assert back.scale == state.scale and back.eps == state.eps


def test_custom_text_round_trips_and_long_text_is_left_out():
    state = explore.ViewState(text="Hello there & welcome?")
    params = explore.to_query_params(state)
    assert params["text"] == "Hello there & welcome?" and "prompt" not in params
    back, _ = explore.parse_query_params(params, {"Fox": PROMPT}, explore.ViewState())
    assert back.text == state.text and back.prompt is None
    long = explore.ViewState(text="x" * (explore.MAX_URL_TEXT + 1), run=True)
    params = explore.to_query_params(long)
    assert "text" not in params and params["run"] == "1"
    assert params["prompt_hash"] == hashlib.sha256(long.text.encode()).hexdigest()[:16]
    back, warnings = explore.parse_query_params(params, {})
    assert back.text_hash == params["prompt_hash"] and back.text is None and not warnings
    too_long = explore.ViewState(text="x" * 200_001, run=True)
    params = explore.to_query_params(too_long)
    assert "prompt_hash" not in params and "run" not in params  # kept nowhere: no results
    _, warnings = explore.parse_query_params({"prompt_hash": "nothex"}, {})
    assert warnings == ["Ignored prompt_hash='nothex' from the URL: it is not a prompt's hash."]


def test_defaults_are_left_out_of_the_url():
    params = explore.to_query_params(explore.ViewState(source="demo"))
    assert params["source"] == "demo"
    assert "scale" not in params and "run" not in params and "model" not in params


@pytest.mark.parametrize(
    ("params", "field", "expected", "fragment"),
    [
        ({"layer": "x"}, "layer", None, "whole number"),
        ({"layer": "-2"}, "layer", None, "≥ 0"),
        ({"kind": "Fancy kind!"}, "kind", "jsae", "not a pair kind's name"),
        ({"mode": "half"}, "mode", "unit", "mode"),
        ({"eps": "abc"}, "eps", DEFAULT_EPS, "greater than 0"),
        ({"eps": "-1"}, "eps", DEFAULT_EPS, "greater than 0"),
        ({"eps": "inf"}, "eps", DEFAULT_EPS, "greater than 0"),
        ({"scale": "nan"}, "scale", 1.0, "finite"),
        ({"prompt": "Nope"}, "prompt", None, "no such example prompt"),
        ({"position": "first"}, "position", None, "whole number"),
    ],
)
def test_bad_query_params_warn_and_fall_back(params, field, expected, fragment):
    state, warnings = explore.parse_query_params(params, {"Fox": PROMPT}, explore.ViewState())
    assert getattr(state, field) == expected
    assert len(warnings) == 1 and fragment in warnings[0]


def test_query_param_lists_use_the_last_value():
    state, warnings = explore.parse_query_params(
        {"layer": ["1", "2"], "run": ["1"]}, {}, explore.ViewState()
    )
    assert state.layer == 2 and state.run and warnings == []


def test_default_source_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(explore.DEFAULT_SOURCE_ENV, raising=False)
    assert explore.default_source() == "demo"
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, " /some/folder ")
    assert explore.default_source() == "/some/folder"
    state, _ = explore.parse_query_params({}, {})
    assert state.source == "/some/folder"


def test_source_type(tmp_path):
    assert explore.source_type("demo") == "demo"
    assert explore.source_type(" planted ") == "planted"
    assert explore.SOURCE_TYPES[:2] == ("demo", "planted")
    assert explore.SOURCE_TYPE_LABELS["planted"] == "Planted ground truth"
    assert explore.source_type("ent/proj/pairs:v3") == "wandb"
    assert explore.source_type(str(tmp_path)) == "folder"
    assert explore.source_type("/pair/folder", "gpt2") == "model"


def test_default_prompts_are_the_example_texts_as_a_copy():
    prompts = explore.default_prompts()
    assert prompts == DEFAULT_PROMPTS
    prompts["x"] = "y"
    assert "x" not in explore.default_prompts()


def test_resolve_pair():
    layers = {"jsae": [0, 1], "plain": [1]}
    assert explore.resolve_pair(layers, None, "jsae") == (0, "jsae", [])
    assert explore.resolve_pair(layers, 1, "plain") == (1, "plain", [])
    layer, kind, warnings = explore.resolve_pair(layers, 7, "jsae")
    assert (layer, kind) == (0, "jsae") and "Layer 7 has no pair" in warnings[0]
    layer, kind, warnings = explore.resolve_pair(layers, 0, "plain")
    assert (layer, kind) == (0, "jsae") and "no plain pair" in warnings[0]
    assert explore.resolve_pair({"plain": [2]}, None, "jsae") == (2, "plain", [])
    with pytest.raises(InputError):
        explore.resolve_pair({}, None, "jsae")


def test_resolve_pair_in_a_sources_own_kinds():
    """A source's kinds come in its order; asked for the default kind it has none of, the
    first is shown silently; asked for a kind it lacks, with a warning."""
    planted = {"true": [0], "rotated": [0], "noisy": [0]}
    assert explore.kinds_at(planted, 0) == ["true", "rotated", "noisy"]
    assert explore.kinds_at({"b": [0], "a": [0, 1]}, 0) == ["b", "a"]
    assert explore.resolve_pair(planted, None, "jsae") == (0, "true", [])
    assert explore.resolve_pair(planted, 0, "noisy") == (0, "noisy", [])
    layer, kind, warnings = explore.resolve_pair(planted, 0, "plain")
    assert (layer, kind) == (0, "true") and "Layer 0 has no plain pair" in warnings[0]
    assert explore.resolve_pair({"b": [3], "a": [1, 3]}, None, "b") == (3, "b", [])
    # the paper's source without a JSAE at the layer: the other control still warns
    _, _, warned = explore.resolve_pair({"jsae": [1], "jsae_randomized": [0]}, 0, "jsae")
    assert "no jsae pair" in warned[0]


def test_eps_grid_and_nearest_stop():
    grid = np.array(explore.EPS_GRID)
    assert (np.diff(grid) > 0).all() and 0.01 in explore.EPS_GRID
    assert grid[0] == pytest.approx(1e-6) and grid[-1] == pytest.approx(10)
    assert explore.nearest_eps_stop(0.0102) == 0.01
    assert explore.nearest_eps_stop(3e-7) == explore.EPS_GRID[0]
    assert explore.nearest_eps_stop(-1) == DEFAULT_EPS


def test_view_link():
    link = explore.view_link("tokens", {"eps": "0.01"}, position=3, in_feature=None)
    assert link == "tokens?eps=0.01&position=3"


def test_view_of_a_run_key():
    prompts = {"Fox": PROMPT, "Other": "Something else."}
    run_key = key(layer=0, kind="plain", mode="scale", scale=0.5)
    view = explore.view_of(run_key, eps=0.02, prompt="Fox", prompts=prompts, run=True)
    assert view == explore.ViewState(
        source="tiny",
        layer=0,
        kind="plain",
        mode="scale",
        scale=0.5,
        eps=0.02,
        prompt="Fox",
        run=True,
    )
    # An example name whose text was edited (or no name) carries the text instead.
    for prompt in ("Other", None, "Nope"):
        edited = explore.view_of(run_key, eps=0.02, prompt=prompt, prompts=prompts, run=False)
        assert edited.prompt is None and edited.text == PROMPT and not edited.run
    picked = explore.view_of(
        run_key, eps=0.02, prompt=None, prompts=prompts, run=True, position=3, out_feature=7
    )
    assert (picked.position, picked.in_feature, picked.out_feature) == (3, None, 7)
    params = explore.to_query_params(picked)
    assert params["text"] == PROMPT and params["position"] == "3" and "in_feature" not in params


def test_run_ablation_is_the_engines_table_without_the_split(source, monkeypatch):
    calls = []
    real = ablation.ablate

    def counting(*args, **kwargs):
        calls.append(kwargs.get("config"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ablation, "ablate", counting)
    data = explore.run_ablation(source, key(mode="zero"))
    assert len(calls) == 1 and calls[0].mode == "zero"
    expected = real(source.model, source.pair(1), PROMPT, config=AblationConfig(mode="zero"))
    assert "important" not in data.table.columns
    pd.testing.assert_frame_equal(data.table, expected.table.drop(columns=["important"]))
    assert data.positions == sorted(set(expected.table["position"]))
    assert data.strings == expected.prompt.strings and data.notice is None
    split = data.split(0.05)
    assert (split["important"] == (split["jacobian"].abs() > 0.05)).all()


def test_run_ablation_reports_truncation(source):
    data = explore.run_ablation(source, key(text="word " * 200))
    assert data.notice is not None and "dropped" in data.notice


def test_histogram_bins_match_numpy():
    rng = np.random.default_rng(1)
    groups = {"important": rng.normal(size=500), "unimportant": rng.normal(0, 0.05, size=2000)}
    bins = explore.histogram_bins(groups, bins=30)
    lo, hi = bins.attrs["range"]
    m = max(np.abs(v).max() for v in groups.values())
    assert (lo, hi) == pytest.approx((-m, m))
    edges = np.linspace(lo, hi, 31)
    for name, values in groups.items():
        counts, _ = np.histogram(values, bins=edges)
        part = bins[bins["experiment"] == name]
        keep = counts > 0
        np.testing.assert_array_equal(part["count"], counts[keep])
        np.testing.assert_allclose(part["bin_start"], edges[:-1][keep])
        np.testing.assert_allclose(part["bin_end"], edges[1:][keep])
        np.testing.assert_allclose(part["share"], counts[keep] / len(values))
        assert part["count"].sum() == len(values)


def test_histogram_bins_of_a_million_values_is_small_and_fast():
    values = np.random.default_rng(0).normal(size=1_000_000)
    bins = explore.histogram_bins({"important": values, "unimportant": values[:10]}, bins=60)
    assert len(bins) <= 120 and bins["count"].sum() == 1_000_010


def test_histogram_bins_edge_cases():
    bins = explore.histogram_bins({"important": np.zeros(5), "unimportant": np.array([])})
    assert bins.attrs["range"] == (-1.0, 1.0) and bins["count"].sum() == 5
    with pytest.raises(InputError):
        explore.histogram_bins({"a": np.ones(3)}, bins=0)
    assert (
        explore.data_range(np.array([2.0, 2.0]))[0] < 2.0 < explore.data_range(np.array([2.0]))[1]
    )
    assert explore.data_range(np.array([])) == (0.0, 1.0)


def test_format_number():
    assert explore.format_number(math.nan) == "—"
    assert explore.format_number(math.inf) == "∞"
    assert explore.format_number(0.123456) == "0.1235"


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_table_bytes_round_trip(fmt):
    table = pd.DataFrame({"position": [1, 2], "diff": [0.5, -0.25], "important": [True, False]})
    data = table_bytes(table, fmt)
    back = pd.read_csv(io.BytesIO(data)) if fmt == "csv" else pd.read_parquet(io.BytesIO(data))
    pd.testing.assert_frame_equal(back, table)


def test_table_bytes_rejects_unknown_formats():
    with pytest.raises(InputError, match="Unknown download format"):
        table_bytes(pd.DataFrame({"a": [1]}), "xlsx")


def test_download_name_names_the_runs_layer_kind_and_mode():
    assert explore.download_name(key(layer=0, kind="plain", mode="zero"), "parquet") == (
        "jsae_connections_layer0_plain_zero.parquet"
    )
    assert explore.download_name(key(layer=2), "csv", "joint_sets") == (
        "jsae_joint_sets_layer2_jsae_unit.csv"
    )
    with pytest.raises(InputError, match="Unknown table 'sets'"):
        explore.download_name(key(), "csv", "sets")


def test_density_grid_matches_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=5000), rng.normal(size=5000)
    grid = explore.density_grid(x, y, bins=20)
    lo, hi = grid.attrs["range"]
    assert lo == pytest.approx(min(x.min(), y.min())) and hi == pytest.approx(max(x.max(), y.max()))
    edges = np.linspace(lo, hi, 21)
    counts, _, _ = np.histogram2d(x, y, bins=[edges, edges])
    assert grid["count"].sum() == 5000 and len(grid) == (counts > 0).sum()
    for row in grid.sample(20, random_state=0).itertuples():
        i = int(np.argmin(np.abs(edges[:-1] - row.x_start)))
        j = int(np.argmin(np.abs(edges[:-1] - row.y_start)))
        assert counts[i, j] == row.count


def test_largest_misses_are_unimportant_and_sorted(source):
    table = explore.run_ablation(source, key()).split(0.3)
    top = explore.largest_misses(table, n=5)
    assert list(top.columns) == list(explore.MISS_COLUMNS)
    unimportant = table[~table["important"]]
    expected = np.sort(np.abs(unimportant["diff"].to_numpy()))[::-1][:5]
    np.testing.assert_allclose(np.abs(top["diff"]), expected)
    assert (np.abs(top["jacobian"]) <= 0.3).all()
    np.testing.assert_allclose(top["miss"], np.abs(top["diff"] - top["predicted"]))
    assert explore.largest_misses(table.assign(important=True)).empty


def test_agreement_counts_within_tolerance_per_group(source):
    table = explore.run_ablation(source, key()).split(0.05)
    tolerance = Tolerance(atol=0.02, rtol=0.1)
    diff, predicted = table["diff"].to_numpy(), table["predicted"].to_numpy()
    within = np.abs(diff - predicted) <= 0.02 + 0.1 * np.abs(predicted)
    important = np.abs(table["jacobian"].to_numpy()) > 0.05
    found = {part.group: part for part in explore.agreement(table, tolerance)}
    assert list(found) == ["all", "important", "unimportant"]
    for group, mask in (
        ("all", slice(None)),
        ("important", important),
        ("unimportant", ~important),
    ):
        assert (found[group].within, found[group].total) == (within[mask].sum(), within[mask].size)
        assert found[group].share == pytest.approx(within[mask].mean())
    empty = explore.agreement(table.assign(important=True), tolerance)[2]
    assert empty.total == 0 and empty.share is None


def test_effect_chart_data(source, monkeypatch):
    table = explore.run_ablation(source, key()).split(0.01)
    lo, hi = explore.effect_range(table)
    both = np.r_[table["predicted"].to_numpy(), table["diff"].to_numpy()]
    assert (lo, hi) == pytest.approx((both.min(), both.max()))
    assert explore.draws_dots(table)
    monkeypatch.setattr("jsae.explore.effect.SCATTER_MAX", len(table) - 1)
    assert not explore.draws_dots(table)
    grid = explore.effect_grid(table, 16)
    predicted, diff = table["predicted"].to_numpy(), table["diff"].to_numpy()
    assert grid.attrs["range"] == pytest.approx((predicted.min(), predicted.max()))
    assert grid.attrs["y_range"] == pytest.approx((diff.min(), diff.max()))
    assert grid["count"].sum() == len(table)


def test_miss_links_and_labels(source):
    table = explore.run_ablation(source, key()).split(0.3)
    top = explore.largest_misses(table, n=3)
    params = {"source": "tiny", "run": "1"}
    links = explore.miss_links(top, "token_explorer", params)
    for link, row in zip(links, top.itertuples(), strict=True):
        page, query = link.split("?")
        assert page == "token_explorer"
        parsed = {k: v[0] for k, v in parse_qs(query).items()}
        assert parsed == params | {
            "position": str(row.position),
            "in_feature": str(row.in_feature),
            "out_feature": str(row.out_feature),
        }
    labels = explore.miss_labels(top)
    assert len(labels) == 3 and labels[0].startswith("#1: position ")
    assert f"out_feature {top['out_feature'].iloc[2]}" in labels[2]


def test_token_connections_and_top(source):
    data = explore.run_ablation(source, key())
    table = data.split(0.01)
    pos = data.positions[2]
    rows = explore.token_connections(table, pos)
    pair = source.pair(1)
    assert len(rows) == pair.k_in * pair.k_out
    assert sorted(rows["in_rank"].unique()) == list(range(pair.k_in))
    # The Jacobian in the table is the sandwich's, feature by feature.
    x = mlp_inputs(source.model, tokenize(source.model, PROMPT).tokens, 1)[pos]
    out = Sandwich(source.model, pair)(x[None])
    assert rows.drop_duplicates("in_feature")["in_feature"].tolist() == out.in_idx[0].tolist()
    for r in rows.sample(10, random_state=0).itertuples():
        j = out.out_idx[0].tolist().index(r.out_feature)
        i = out.in_idx[0].tolist().index(r.in_feature)
        assert r.jacobian == pytest.approx(float(out.jacobian[0, j, i]), abs=1e-5)
    top = explore.top_connections(rows, n=5)
    assert top["abs_jacobian"].is_monotonic_decreasing and len(top) == 5
    with pytest.raises(InputError):
        explore.token_connections(table, 0)  # BOS is not ablated


def test_token_context():
    strings = ["<bos>", "The", " cat", " sat", "\n", "on"]
    assert explore.token_context(strings, 2, width=1) == "The**·cat** sat …"
    assert explore.token_context(strings, 5, width=2) == "…  sat⏎ **on**"


def test_token_label_and_markdown_escape():
    assert explore.token_label(" the\n") == "·the⏎"
    assert explore.token_label("") == "∅"
    assert explore.escape_markdown("*a_b*") == "\\*a\\_b\\*"
    assert explore.token_chip(" *", 12) == "·\\*₁₂"


def test_log_abs_jacobian():
    np.testing.assert_allclose(
        explore.log_abs_jacobian(np.array([0.0, -0.01, 10.0])), [-12.0, -2.0, 1.0]
    )


def test_token_input_matches_mlp_inputs(model):
    x = explore.token_input(model, 1, PROMPT, 2)
    torch.testing.assert_close(x, mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[2])
    with pytest.raises(InputError):
        explore.token_input(model, 1, PROMPT, 999)
    with pytest.raises(InputError, match="outside the prompt"):
        explore.token_input(model, 1, PROMPT, 4, max_tokens=4)


def test_connection_options_rank_by_abs_jacobian(source):
    rows = explore.token_connections(explore.run_ablation(source, key()).split(0.01), 3)
    options = explore.connection_options(rows)
    assert len(options) == len(rows)
    magnitudes = [abs(j) for j in options.values()]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for r in rows.itertuples():
        assert options[(r.in_feature, r.out_feature)] == r.jacobian


def test_linked_selection(source):
    table = explore.run_ablation(source, key()).split(0.01)
    row = table[table["position"] == 3].iloc[5]
    wanted = (int(row["in_feature"]), int(row["out_feature"]))
    assert explore.linked_selection(table, 3, *wanted) == explore.LinkedSelection(3, wanted)
    assert explore.linked_selection(table, 3) == explore.LinkedSelection(3)
    bad = explore.linked_selection(table, 3, wanted[0], 10_000)
    assert bad.position == 3 and bad.connection is None and "not a connection" in bad.warning
    for position in (0, 999):  # BOS is never ablated
        gone = explore.linked_selection(table, position, *wanted)
        assert gone.position is None and f"Position {position} was not ablated" in gone.warning


def test_compared_kinds_and_gaps_of_the_randomized_controls():
    assert explore.compared_kinds("plain") == ("jsae", "plain")
    assert explore.compared_kinds("jsae_randomized") == ("jsae_randomized", "plain_randomized")
    layers = {"jsae": [1], "plain": [1], "jsae_randomized": [1], "plain_randomized": [0]}
    assert explore.comparison_gap(layers, 1) is None
    controls = explore.compared_kinds("plain_randomized")
    gap = explore.comparison_gap(layers, 1, controls)
    assert gap.message.startswith("Layer 1 has only a jsae_randomized pair.")
    assert gap.switch_to is None and "No layer of this source has both" in gap.message
    only = explore.comparison_gap({"jsae": [1], "jsae_randomized": [1]}, 1)
    assert "only jsae pairs" in only.message  # two kinds, but not the two compared


def test_comparison_gap():
    both = {"jsae": [0, 1, 2], "plain": [1, 2]}
    assert explore.comparison_gap(both, 1) is None
    gap = explore.comparison_gap(both, 0)
    assert gap.message.startswith("Layer 0 has only a jsae pair.") and gap.switch_to == 1
    assert "Layers with both: 1, 2." in gap.message
    apart = explore.comparison_gap({"jsae": [0], "plain": [1]}, 1)
    assert apart.switch_to is None and "No layer of this source has both." in apart.message
    only = explore.comparison_gap({"jsae": [0, 1]}, 0)
    assert only.switch_to is None and "only jsae pairs" in only.message


def test_pair_stats_and_jacobian_bins(source):
    eps = 0.02
    runs = {kind: explore.run_ablation(source, key(kind=kind)) for kind in explore.COMPARED}
    tables = {kind: data.split(eps) for kind, data in runs.items()}
    for kind, table in tables.items():
        model, pair = source.model_for(1, kind), source.pair(1, kind)
        found = analyse(model, pair, runs[kind].result(eps), n_bootstrap=20)
        stats = explore.pair_stats(table, eps, found)
        jac, diff = np.abs(table["jacobian"].to_numpy()), np.abs(table["diff"].to_numpy())
        assert stats.important_share == pytest.approx((jac > eps).mean())
        unimportant = diff[jac <= eps].mean()
        assert stats.unimportant_mean_abs_diff == pytest.approx(unimportant)
        assert stats.ratio == pytest.approx(diff[jac > eps].mean() / unimportant)
        # The verdict is the analysis' own: effect statistics and the pair's health.
        positions = sorted(set(table["position"].tolist()))
        x = mlp_inputs(model, tokenize(model, PROMPT).tokens, 1)[positions]
        health = pair_health(Sandwich(model, pair), x)
        assert stats.verdict == verdict(effect_statistics(table, eps, n_bootstrap=20), health)
        assert stats.statistics.auc == pytest.approx(
            roc_auc_score(np.abs(table["diff"].to_numpy()) > DEFAULT_TAU, jac)
        )
        with pytest.raises(InputError, match="analysis is at"):
            explore.pair_stats(table, eps * 2, found)
    bins = explore.jacobian_bins(tables, eps, bins=25)
    lo, hi = bins.attrs["range"]
    logs = {
        k: np.log10(np.maximum(np.abs(t["jacobian"].to_numpy(np.float64)), 1e-12))
        for k, t in tables.items()
    }
    assert lo <= math.log10(eps) <= hi
    assert lo == pytest.approx(min(v.min() for v in logs.values()))
    for kind, values in logs.items():
        counts, _ = np.histogram(values, bins=np.linspace(lo, hi, 26))
        assert bins[bins["kind"] == kind]["count"].tolist() == counts[counts > 0].tolist()


def matrix_rows(jacobian: np.ndarray, position: int = 3) -> pd.DataFrame:
    """``token_connections``-like rows of a k_out × k_in Jacobian whose ranks are its row
    and column indices (feature ids differ from the ranks)."""
    k_out, k_in = jacobian.shape
    out_rank, in_rank = np.divmod(np.arange(k_out * k_in), k_in)
    return pd.DataFrame(
        {
            "position": position,
            "in_feature": 100 + 7 * in_rank,
            "out_feature": 500 + 3 * out_rank,
            "in_rank": in_rank,
            "out_rank": out_rank,
            "jacobian": jacobian.ravel(),
        }
    )


def places(rows: pd.DataFrame, axis: str) -> dict[int, int]:
    """Each feature's single place on one axis ("in" or "out")."""
    pairs = rows[[f"{axis}_feature", f"{axis}_order"]].drop_duplicates()
    assert pairs[f"{axis}_feature"].is_unique, "a feature has two places"
    return dict(zip(pairs[f"{axis}_feature"], pairs[f"{axis}_order"], strict=True))


@pytest.mark.parametrize("order", list(explore.HEATMAP_ORDERS))
def test_heatmap_orders_are_permutations_of_the_ranks(source, order):
    data = explore.run_ablation(source, key())
    rows = explore.token_connections(data.split(0.01), data.positions[2])
    ordered = explore.order_connections(rows, order)
    pair = source.pair(1)
    assert sorted(places(ordered, "in").values()) == list(range(pair.k_in))
    assert sorted(places(ordered, "out").values()) == list(range(pair.k_out))
    cells = list(zip(ordered["in_order"], ordered["out_order"], strict=True))
    assert len(set(cells)) == len(rows) == pair.k_in * pair.k_out  # no cell lost or doubled
    pd.testing.assert_frame_equal(ordered[rows.columns], rows)  # the rows themselves unchanged
    assert "in_order" not in rows  # the caller's frame is not modified


def test_heatmap_order_by_activation_is_the_activation_rank(source):
    rows = explore.token_connections(explore.run_ablation(source, key()).split(0.01), 3)
    ordered = explore.order_connections(rows, explore.BY_ACTIVATION)
    assert ordered["in_order"].tolist() == rows["in_rank"].tolist()
    assert ordered["out_order"].tolist() == rows["out_rank"].tolist()


def test_shuffled_heatmap_is_fixed_per_position_and_differs_between_positions(source):
    data = explore.run_ablation(source, key())
    table = data.split(0.01)
    shuffled = {}
    for position in data.positions:
        rows = explore.token_connections(table, position)
        ordered = explore.order_connections(rows, explore.SHUFFLED)
        again = explore.order_connections(rows.copy(), explore.SHUFFLED)
        assert places(ordered, "in") == places(again, "in")
        assert places(ordered, "out") == places(again, "out")
        shuffled[position] = (
            tuple(ordered.sort_values("in_rank")["in_order"].unique()),
            tuple(ordered.sort_values("out_rank")["out_order"].unique()),
        )
    assert len(set(shuffled.values())) > 1  # the seed is the position
    by_rank = (tuple(range(source.pair(1).k_in)), tuple(range(source.pair(1).k_out)))
    assert any(order != by_rank for order in shuffled.values())
    assert explore.DEFAULT_HEATMAP_ORDER == explore.SHUFFLED


def test_shuffled_heatmap_is_one_permutation_of_columns_then_one_of_rows():
    rows = matrix_rows(np.arange(12.0).reshape(3, 4), position=11)
    ordered = explore.order_connections(rows, explore.SHUFFLED)
    rng = np.random.default_rng(11)
    expected_in, expected_out = rng.permutation(4), rng.permutation(3)
    assert ordered["in_order"].tolist() == expected_in[rows["in_rank"]].tolist()
    assert ordered["out_order"].tolist() == expected_out[rows["out_rank"]].tolist()


def test_clustered_heatmap_puts_identical_rows_and_columns_together():
    rng = np.random.default_rng(5)
    jacobian = rng.normal(0, 1, (6, 5)) * np.arange(1, 7)[:, None]  # rows far apart
    jacobian[4] = -jacobian[0]  # the same |J| as row 0 (clustering is on |J|)
    jacobian[:, 3] = jacobian[:, 0]
    ordered = explore.order_connections(matrix_rows(jacobian), explore.CLUSTERED)
    out_places = ordered.drop_duplicates("out_rank").set_index("out_rank")["out_order"]
    in_places = ordered.drop_duplicates("in_rank").set_index("in_rank")["in_order"]
    assert abs(out_places[0] - out_places[4]) == 1
    assert abs(in_places[0] - in_places[3]) == 1
    # Not simply the activation order, where they are apart.
    assert out_places.tolist() != list(range(6))


def test_clustered_heatmap_is_scipys_leaf_order():
    from scipy.cluster.hierarchy import leaves_list, linkage

    jacobian = np.random.default_rng(9).normal(0, 1, (7, 6))
    ordered = explore.order_connections(matrix_rows(jacobian), explore.CLUSTERED)
    magnitude = np.abs(jacobian)
    rows_leaves = leaves_list(linkage(magnitude, "average", optimal_ordering=True))
    cols_leaves = leaves_list(linkage(magnitude.T, "average", optimal_ordering=True))
    # Reading the axes in their drawn order gives the dendrograms' leaves.
    by_out = ordered.drop_duplicates("out_rank").sort_values("out_order")["out_rank"]
    by_in = ordered.drop_duplicates("in_rank").sort_values("in_order")["in_rank"]
    assert by_out.tolist() == rows_leaves.tolist()
    assert by_in.tolist() == cols_leaves.tolist()
    assert rows_leaves.tolist() != list(range(7))  # the example does reorder


@pytest.mark.parametrize(
    "jacobian",
    [
        np.array([[0.5]]),  # 1 × 1
        np.array([[0.1, -0.3, 0.2]]),  # one row
        np.array([[0.1], [-0.3], [0.2]]),  # one column
        np.zeros((3, 4)),  # all distances 0
        np.array([[np.nan, 1.0], [np.inf, 0.0], [0.2, 0.2]]),  # non-finite J
    ],
)
@pytest.mark.parametrize("order", list(explore.HEATMAP_ORDERS))
def test_heatmap_orders_of_degenerate_jacobians(jacobian, order):
    ordered = explore.order_connections(matrix_rows(jacobian), order)
    k_out, k_in = jacobian.shape
    assert sorted(places(ordered, "in").values()) == list(range(k_in))
    assert sorted(places(ordered, "out").values()) == list(range(k_out))


def test_unknown_heatmap_order_is_refused():
    with pytest.raises(InputError, match="shuffled"):
        explore.order_connections(matrix_rows(np.ones((2, 2))), "alphabetical")


def test_heatmap_order_round_trips_through_query_params():
    state = explore.ViewState(position=4, order=explore.CLUSTERED)
    params = explore.to_query_params(state)
    assert params["order"] == "clustered"
    back, warnings = explore.parse_query_params(params, {}, explore.ViewState())
    assert warnings == [] and back == state
    assert "order" not in explore.to_query_params(explore.ViewState())  # the default
    bad, warnings = explore.parse_query_params({"order": "sideways"}, {}, explore.ViewState())
    assert bad.order == explore.DEFAULT_HEATMAP_ORDER
    assert len(warnings) == 1 and "order" in warnings[0]
