"""The Streamlit explorer driven headlessly with AppTest, on a tiny source folder.

The app opens on ``$JSAE_DEFAULT_SOURCE`` (set here to a tiny source written with
``save_source``), so these tests neither need nor touch the bundled default.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from app.registry import DEFAULT_PAGE, TOKEN_PAGE
from app.registry import PAGES as PAGES_BY_URL
from jsae import ablation, explore
from jsae.ablation import AblationConfig, ablate
from jsae.analysis import DEFAULT_TAU, analyse, prompt_curves
from jsae.dose import CURVE_LABELS, classify_curve, dose_response
from jsae.loading import load_source, save_source
from jsae.pair import KIND_LABELS, PAIR_KINDS
from jsae.stats import SUMMARY_LABELS, Tolerance, jacobian_sparsity, summarize, within_tolerance
from jsae.table import DEFAULT_EPS
from tests.helpers import tiny_model, tiny_pair, tiny_pairs

APP = "../streamlit_app.py"
TIMEOUT = 60
JOINT_DOWNLOADS = ["Download the sets (CSV)", "Download the curves (CSV)"]
PAGES = {
    "sparsity": "app/pages/causal_sparsity.py",
    "effect": "app/pages/jacobian_vs_effect.py",
    "tokens": "app/pages/token_explorer.py",
    "compare": "app/pages/jsae_vs_plain.py",
}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    model = tiny_model()
    pairs = tiny_pairs(model)
    return str(save_source(tmp_path_factory.mktemp("app") / "src", model, pairs))


@pytest.fixture(scope="module")
def jsae_only_source(tmp_path_factory):
    model = tiny_model()
    pairs = {"jsae": {1: tiny_pair(model, 1)}}
    return str(save_source(tmp_path_factory.mktemp("app") / "only", model, pairs))


@pytest.fixture(scope="module")
def loaded(tiny_source):
    return load_source(tiny_source)


@pytest.fixture
def app(tiny_source, monkeypatch):
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


@pytest.fixture
def ablate_calls(monkeypatch):
    """Count calls to the engine (the app looks ``ablate`` up at call time); start with
    an empty result cache so a call is really needed."""
    st.cache_data.clear()
    calls = []
    real = ablation.ablate

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(ablation, "ablate", counting)
    return calls


def no_problems(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("vega_lite_chart")]


def marks(spec: dict) -> list[str]:
    found = []
    for node in [spec, spec.get("spec", {}), *spec.get("layer", [])]:
        mark = node.get("mark")
        if mark:
            found.append(mark["type"] if isinstance(mark, dict) else mark)
    return found


def bar_layer(spec: dict) -> dict:
    """A histogram's bars: the spec itself, or its layer of bars."""
    return next(
        n for n in [spec, *spec.get("layer", [])] if marks({"mark": n.get("mark")}) == ["bar"]
    )


def run(at: AppTest) -> AppTest:
    at.button(key="run_button").click().run()
    return at


def first_prompt() -> tuple[str, str]:
    return next(iter(explore.default_prompts().items()))


def expected_result(loaded, layer=0, kind="jsae", eps=0.01, text=None, mode="unit", scale=1.0):
    """The engine's result for the app's settings, computed here."""
    text = text or first_prompt()[1]
    config = AblationConfig(mode=mode, scale=scale)
    return ablate(
        loaded.model_for(layer, kind), loaded.pair(layer, kind), text, eps=eps, config=config
    )


def expected_table(loaded, layer=0, kind="jsae", eps=0.01, text=None, mode="unit", scale=1.0):
    return expected_result(loaded, layer, kind, eps, text, mode, scale).table


def expected_analysis(loaded, layer=0, kind="jsae", eps=0.01, tau=DEFAULT_TAU, text=None):
    """``jsae.analysis.analyse`` of the same run with its joint ablation's curves, computed
    here (the page's verdict)."""
    result = expected_result(loaded, layer, kind, eps, text)
    model, pair = loaded.model_for(layer, kind), loaded.pair(layer, kind)
    curves = prompt_curves(model, pair, result)
    return analyse(model, pair, result, tau=tau, curves=curves)


def boxes(at: AppTest) -> list[str]:
    return [box.value for box in [*at.success, *at.info, *at.warning]]


def test_opens_on_the_default_source_and_waits_for_run(app, tiny_source):
    at = app.run()
    no_problems(at)
    assert at.sidebar.radio(key="source_type").value == "folder"
    assert at.sidebar.selectbox(key="layer").options == ["0", "1"]
    assert at.sidebar.selectbox(key="layer").value == 0
    assert at.sidebar.radio(key="kind").options == [
        "JSAEs"
    ]  # layer 0 has only a jsae pair (the paper's label)
    name, text = first_prompt()
    assert at.selectbox(key="prompt_choice").value == name
    assert at.text_area(key="prompt_text").value == text
    assert any("Press **Run**" in i.value for i in at.info)
    assert not at.metric and not at.get("vega_lite_chart")
    assert at.query_params == {
        "source": tiny_source,
        "layer": "0",
        "kind": "jsae",
        "mode": "unit",
        "eps": "0.01",
        "prompt": name,
    }


def test_run_shows_the_packages_numbers(app, loaded):
    at = run(app.run())
    no_problems(at)
    table = expected_table(loaded)
    summary = summarize(table)
    shown = metrics(at)
    for experiment, label in (("important", "Important"), ("unimportant", "Unimportant")):
        row = summary.loc[experiment]
        assert shown[f"{label} connections"] == f"{int(row['connections']):,}"
        assert shown[f"{label} mean |diff|"] == explore.format_number(row["mean_abs_diff"])
    share = summary.loc["unimportant", "connections"] / summary.loc["all", "connections"]
    assert shown["Share unimportant"] == f"{share:.1%}"
    found = expected_analysis(loaded).verdict
    assert shown["Ratio of the two"] == explore.format_number(found.ratio, 3)
    assert any(found.sentence in box for box in boxes(at))
    # The histogram, with the two experiments on shared numpy bins, then the decomposition
    # (then the sets removed together, their curves and the mass-capture curve).
    spec, parts, _sets, _curves, _capture = chart_specs(at)
    assert marks(parts) == ["bar", "text"]
    assert marks(spec) == ["rect", "bar", "text"]  # the exit band under and over the bars
    bars = bar_layer(spec)
    assert bars["encoding"]["color"]["field"] == "experiment"
    diff = table["diff"].to_numpy(dtype=np.float64)  # the x range is the data's own
    assert bars["encoding"]["x"]["scale"]["domain"] == [diff.min(), diff.max()]
    # The summary table is summarize()'s (the joint ablation's sets table comes first).
    pd.testing.assert_frame_equal(
        at.dataframe[1].value.reset_index(drop=True),
        summary.rename(columns=SUMMARY_LABELS).reset_index(drop=True),
        check_dtype=False,
    )
    labels = [b.label for b in at.get("download_button")]
    assert labels == [*JOINT_DOWNLOADS, "Download CSV", "Download Parquet"]
    assert at.query_params["run"] == "1"


@pytest.mark.parametrize("page", list(PAGES))
def test_a_run_writes_the_url_once(app, page, monkeypatch):
    """Each change of the query string pushes a browser history entry, so a Run (and the
    selection the token explorer then picks) writes the URL once: Back undoes the Run."""
    from streamlit.runtime.state.query_params_proxy import QueryParamsProxy

    at = app.run()
    at.switch_page(PAGES[page]).run()
    writes = []
    real = QueryParamsProxy.from_dict

    def recording(self, params):
        writes.append(dict(params))
        return real(self, params)

    monkeypatch.setattr(QueryParamsProxy, "from_dict", recording)
    run(at)
    no_problems(at)
    assert len(writes) == 1, writes
    assert writes[0]["run"] == "1" and writes[0] == {k: at.query_params[k] for k in at.query_params}


def test_histogram_views(app):
    at = run(app.run())
    at.toggle(key="hist_log").set_value(False).run()
    at.button_group(key="hist_layout").set_value("facet").run()
    at.button_group(key="hist_y").set_value("share").run()
    no_problems(at)
    important, unimportant = map(bar_layer, chart_specs(at)[:2])  # one panel per experiment
    for spec in (important, unimportant):
        assert spec["encoding"]["y"]["field"] == "share"
        assert spec["encoding"]["y"]["scale"]["type"] == "linear"
    assert important["encoding"]["x"]["scale"] == unimportant["encoding"]["x"]["scale"]


def test_eps_only_resplits(app, loaded, ablate_calls):
    at = run(app.run())
    assert len(ablate_calls) == 1
    at.text_input(key="eps").set_value("0.3").run()
    no_problems(at)
    assert len(ablate_calls) == 1  # re-split, not recomputed
    summary = summarize(expected_table(loaded, eps=0.3))
    assert (
        metrics(at)["Unimportant connections"] == f"{summary.loc['unimportant', 'connections']:,}"
    )
    assert at.select_slider(key="eps_slider").value == explore.nearest_eps_stop(0.3)
    at.select_slider(key="eps_slider").set_value(explore.EPS_GRID[0]).run()
    assert float(at.text_input(key="eps").value) == explore.EPS_GRID[0]
    assert at.query_params["eps"] == f"{explore.EPS_GRID[0]:g}"
    for page in PAGES.values():  # every page reuses the cached run (layer 0: jsae only)
        at.switch_page(page).run()
        no_problems(at)
    assert len(ablate_calls) == 1
    at.switch_page(PAGES["sparsity"]).run()
    at.sidebar.selectbox(key="layer").set_value(1).run()
    assert any("settings changed" in i.value for i in at.info)  # stale until Run
    assert len(ablate_calls) == 1
    run(at)
    assert len(ablate_calls) == 2


def test_query_params_round_trip(app, loaded, tiny_source):
    name = list(explore.default_prompts())[1]
    params = {
        "layer": "1",
        "kind": "plain",
        "mode": "scale",
        "scale": "0.5",
        "eps": "0.02",
        "prompt": name,
        "run": "1",
    }
    app.query_params.update(params)
    at = app.run()
    no_problems(at)
    assert at.sidebar.selectbox(key="layer").value == 1
    assert at.sidebar.radio(key="kind").value == "plain"
    assert at.sidebar.radio(key="mode").value == "scale"
    assert at.sidebar.number_input(key="scale").value == 0.5
    assert at.text_input(key="eps").value == "0.02"
    assert at.selectbox(key="prompt_choice").value == name
    assert at.query_params == {"source": tiny_source, **params}
    # run=1 reproduces the results without pressing Run.
    table = expected_table(loaded, 1, "plain", 0.02, explore.default_prompts()[name], "scale", 0.5)
    n = summarize(table).loc["important", "connections"]
    assert metrics(at)["Important connections"] == f"{n:,}"
    at.sidebar.radio(key="mode").set_value("zero").run()
    assert at.query_params["mode"] == "zero" and "scale" not in at.query_params
    assert "run" not in at.query_params  # the shown results are for the old settings


def test_custom_text_from_the_url(app):
    app.query_params["text"] = "Hello there, Bob."
    at = app.run()
    no_problems(at)
    assert at.text_area(key="prompt_text").value == "Hello there, Bob."
    assert at.selectbox(key="prompt_choice").value == explore.CUSTOM_PROMPT
    at.selectbox(key="prompt_choice").set_value(first_prompt()[0]).run()
    assert at.text_area(key="prompt_text").value == first_prompt()[1]
    assert "text" not in at.query_params and at.query_params["prompt"] == first_prompt()[0]


def test_bad_query_params_warn_and_use_defaults(app):
    app.query_params.update({"layer": "9", "eps": "abc", "mode": "half", "prompt": "Nope"})
    at = app.run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.warning)
    for fragment in ("Layer 9", "eps='abc'", "mode='half'", "prompt='Nope'"):
        assert fragment in warnings
    assert at.sidebar.selectbox(key="layer").value == 0
    assert float(at.text_input(key="eps").value) == DEFAULT_EPS
    assert at.sidebar.radio(key="mode").value == "unit"
    at.run()
    assert not at.warning  # said once


def test_bad_source_shows_an_error(app, tmp_path):
    app.query_params["source"] = str(tmp_path / "missing")
    at = app.run()
    assert not at.exception
    assert any("not a folder" in e.value for e in at.error)
    assert not at.text_area  # no prompt panel without a source
    at.sidebar.radio(key="source_type").set_value("wandb").run()
    assert any("W&B artifact path" in i.value for i in at.sidebar.info)


def test_wandb_failure_shows_an_error(app, monkeypatch):
    from jsae.errors import SourceError
    from jsae.loading import source

    def offline(path, cache_dir=None, refresh=False):
        raise SourceError(f"Could not download the W&B artifact {path!r}: offline.")

    monkeypatch.setattr(source, "download_wandb_artifact", offline)
    at = app.run()
    at.sidebar.radio(key="source_type").set_value("wandb").run()
    at.sidebar.text_input(key="source_wandb").input("me/proj/pairs:v0").run()
    assert not at.exception
    assert any("Could not download the W&B artifact" in e.value for e in at.error)
    assert at.query_params["source"] == "me/proj/pairs:v0"  # a link reproduces the error


def test_model_plus_pair_folder(app, tiny_source):
    at = app.run()
    at.sidebar.radio(key="source_type").set_value("model").run()
    at.sidebar.text_input(key="source_model").input(f"{tiny_source}/model").run()
    at.sidebar.text_input(key="source_pair").input(f"{tiny_source}/pairs/jsae/layer_1").run()
    no_problems(at)
    assert at.sidebar.selectbox(key="layer").options == ["1"]
    run(at)
    no_problems(at)
    assert at.metric
    assert at.query_params["model"] == f"{tiny_source}/model"


def test_a_folder_that_is_no_source_shows_an_error(app, tmp_path):
    app.query_params["source"] = str(tmp_path)
    at = app.run()
    assert not at.exception
    assert any("not a pair folder" in e.value for e in at.error)


def test_empty_prompt_and_bad_eps_show_errors(app):
    at = app.run()
    at.text_area(key="prompt_text").set_value("   ").run()
    assert at.selectbox(key="prompt_choice").value == explore.CUSTOM_PROMPT
    run(at)
    assert not at.exception
    assert any("prompt is empty" in e.value for e in at.error)
    at.text_area(key="prompt_text").set_value("Some text.").run()
    run(at)
    no_problems(at)
    at.text_input(key="eps").set_value("0").run()
    assert not at.exception
    assert any("ε must be" in e.value for e in at.error)


@pytest.mark.parametrize(
    ("typed", "said"),
    [("-1", "greater than 0, got '-1'"), ("abc", "must be a number, got 'abc'"), ("0", "got '0'")],
)
def test_an_unusable_eps_is_quoted_and_the_url_follows_the_box(app, typed, said):
    at = run(app.run())
    at.text_input(key="eps").set_value(typed).run()
    assert not at.exception
    assert any(said in e.value for e in at.error)  # what was typed, not 0.0
    assert at.query_params["eps"] == typed  # the link reproduces the message
    assert at.select_slider(key="eps_slider").disabled  # it cannot show the box's value
    at.text_input(key="eps").set_value("0.2").run()
    no_problems(at)
    assert at.query_params["eps"] == "0.2"
    assert at.select_slider(key="eps_slider").value == explore.nearest_eps_stop(0.2)
    assert not at.select_slider(key="eps_slider").disabled


def test_long_prompt_is_truncated_with_a_notice(app):
    at = app.run()
    at.text_area(key="prompt_text").set_value("word " * 300).run()
    run(at)
    no_problems(at)
    assert any("dropped" in w.value for w in at.warning)


def test_unexpected_errors_show_briefly(app, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(explore, "diff_bins", broken)
    at = run(app.run())
    assert not at.exception
    assert any("Unexpected error" in e.value and "boom" in e.value for e in at.error)


def test_parquet_unavailable_is_explained(app, monkeypatch):
    monkeypatch.setattr(explore, "parquet_available", lambda: False)
    at = run(app.run())
    assert not at.exception
    assert any("pyarrow" in e.value for e in at.error)
    assert [b.label for b in at.get("download_button")] == [*JOINT_DOWNLOADS, "Download CSV"]


def test_secrets_reach_the_environment(app, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "placeholder")  # restored after the test
    monkeypatch.delenv("WANDB_API_KEY")
    app.secrets["WANDB_API_KEY"] = "from-secrets"
    app.run()
    assert os.environ["WANDB_API_KEY"] == "from-secrets"


def test_navigation_lists_exactly_the_four_pages(app):
    at = app.run()
    for page in PAGES.values():
        at.switch_page(page).run()
        assert not at.exception
    with pytest.raises(ValueError):  # the app's helper modules are never pages
        at.switch_page("app/cache.py")


def test_jacobian_vs_effect(app, loaded):
    short = "The quick brown fox jumps."
    at = app.run()
    at.text_area(key="prompt_text").set_value(short).run()
    run(at)
    at.switch_page(PAGES["effect"]).run()
    no_problems(at)
    table = expected_table(loaded, text=short)
    within = within_tolerance(table, Tolerance())
    assert metrics(at)["All connections within tolerance"] == f"{within.mean():.1%}"
    (spec,) = chart_specs(at)
    assert marks(spec) == ["circle", "line"]  # few connections: a scatter with y = x
    at.number_input(key="tol_atol").set_value(0.5).run()
    within = within_tolerance(table, Tolerance(atol=0.5))
    assert metrics(at)["All connections within tolerance"] == f"{within.mean():.1%}"
    misses = at.dataframe[0].value
    top = explore.largest_misses(table, n=20)
    assert misses["diff"].tolist() == pytest.approx(top["diff"].tolist())
    link = misses["open"].iloc[0]
    assert link.startswith("token_explorer?") and f"position={top['position'].iloc[0]}" in link
    assert f"in_feature={top['in_feature'].iloc[0]}" in link and "run=1" in link


def test_many_connections_draw_a_density_heatmap(app, loaded):
    at = app.run()
    at.text_area(key="prompt_text").set_value("word " * 200).run()
    run(at)
    at.switch_page(PAGES["effect"]).run()
    no_problems(at)
    (spec,) = chart_specs(at)
    exits = expected_table(loaded, text="word " * 200)["exited"].any()
    assert marks(spec) == ["rect", "rect", "line"] if exits else ["rect", "line"]


def test_misses_open_the_token_explorer(app, loaded):
    at = run(app.run())
    at.switch_page(PAGES["effect"]).run()
    at.selectbox(key="miss_pick").set_value(1).run()
    at.button(key="miss_open").click().run()
    no_problems(at)
    top = explore.largest_misses(expected_table(loaded), n=20).iloc[1]
    assert at.button_group(key="tok_position").value == top["position"]
    assert at.selectbox(key="tok_connection").value == (top["in_feature"], top["out_feature"])
    assert at.query_params["position"] == str(top["position"])
    assert at.query_params["out_feature"] == str(top["out_feature"])


def test_token_explorer(app, loaded):
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    table = expected_table(loaded)
    positions = sorted(table["position"].unique())
    assert at.button_group(key="tok_position").value == positions[0]
    heat, margins, dose = chart_specs(at)[:3]  # then the connection graph
    assert marks(heat) == ["rect", "rect"] and marks(margins) == ["bar", "rule"]
    assert marks(dose)[:3] == ["line", "line", "line"] and marks(dose)[-2:] == ["rule", "point"]
    at.button_group(key="tok_position").set_value(positions[2]).run()
    no_problems(at)
    rows = explore.token_connections(
        explore.run_ablation(loaded, _key(loaded)).split(0.01), positions[2]
    )
    best = explore.top_connections(rows, 1).iloc[0]
    assert at.selectbox(key="tok_connection").value == (best["in_feature"], best["out_feature"])
    # The shown curve and its class are the package's for the same inputs.
    from jsae.sandwich import Sandwich

    x = explore.token_input(loaded.model, 0, first_prompt()[1], positions[2])
    dose = dose_response(
        Sandwich(loaded.model, loaded.pair(0)), x, best["in_feature"], best["out_feature"]
    )
    shape = classify_curve(dose.curve["in_act"], dose.curve["out_act"])
    boxes = " ".join(b.value for b in [*at.success, *at.info, *at.warning])
    assert CURVE_LABELS[shape.label] in boxes and shape.description in boxes
    assert metrics(at)["J[out, in]"] == explore.format_number(dose.jacobian)
    assert at.query_params["position"] == str(positions[2])


def _key(loaded, layer=0, kind="jsae"):
    return explore.RunKey("tiny", None, layer, kind, "unit", 1.0, first_prompt()[1])


def heatmap_cells(at: AppTest) -> list[dict]:
    """The rows each layer of the page's heatmap draws, without their places on the axes."""
    chart = at.get("vega_lite_chart")[0].proto
    data = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.datasets}
    layers = json.loads(chart.spec)["layer"]
    return [
        data[layer["data"]["name"]].drop(columns=["in_order", "out_order"]).to_dict("records")
        for layer in layers
    ]


def token_page_snapshot(at: AppTest) -> dict:
    """What the token explorer shows, less the heatmap's axis titles and order (its
    sort fields stay) and the URL's order."""
    heat, margins, dose = chart_specs(at)[:3]
    for layer in heat["layer"]:
        layer.pop("data")  # named by a hash of the rows, places included
        for axis in ("x", "y"):
            layer["encoding"][axis].pop("title")
    return {
        "cells": heatmap_cells(at),
        "position": at.button_group(key="tok_position").value,
        "connection": at.selectbox(key="tok_connection").value,
        "metrics": metrics(at),
        "boxes": [b.value for b in [*at.success, *at.info, *at.warning, *at.error]],
        "texts": [t.value for t in [*at.subheader, *at.caption]],
        "top": at.dataframe[0].value.to_dict(),
        "heatmap": heat,
        "margins": margins,
        "dose": dose,
        "url": {k: v for k, v in at.query_params.items() if k != "order"},
    }


def heatmap_titles(at: AppTest) -> tuple[str, str]:
    encoding = chart_specs(at)[0]["layer"][0]["encoding"]
    return encoding["x"]["title"], encoding["y"]["title"]


def test_token_explorer_heatmap_order(app):
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert at.button_group(key="tok_order").value == explore.DEFAULT_HEATMAP_ORDER
    assert heatmap_titles(at) == ("in_feature (random order)", "out_feature (random order)")
    assert "order" not in at.query_params  # the default is left out
    shown = token_page_snapshot(at)
    for order in (explore.CLUSTERED, explore.BY_ACTIVATION, explore.SHUFFLED):
        at.button_group(key="tok_order").set_value(order).run()
        no_problems(at)
        name = explore.HEATMAP_ORDER_TITLES[order]
        assert heatmap_titles(at) == (f"in_feature ({name})", f"out_feature ({name})")
        assert at.query_params.get("order") == (None if order == explore.SHUFFLED else order)
        assert token_page_snapshot(at) == shown  # only the order changed


def test_token_explorer_heatmap_order_from_the_url(app):
    app.query_params.update({"run": "1", "order": explore.CLUSTERED})
    at = app.run()
    assert "order" not in at.query_params  # not the token explorer's page
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert at.button_group(key="tok_order").value == explore.CLUSTERED
    assert heatmap_titles(at)[0] == "in_feature (clustered by |J|)"
    assert at.query_params["order"] == explore.CLUSTERED


def test_long_prompts_pick_the_token_with_a_slider(app, monkeypatch):
    monkeypatch.setattr(explore, "MAX_TOKEN_CHIPS", 10)
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    slider = at.select_slider(key="tok_position")
    slider.set_value(slider.value + 4).run()
    no_problems(at)
    assert at.query_params["position"] == str(slider.value)


def test_token_explorer_link_restores_the_selection(app, loaded):
    table = expected_table(loaded)
    row = table[table["position"] == 3].iloc[5]
    app.query_params.update(
        {
            "run": "1",
            "position": "3",
            "in_feature": str(row["in_feature"]),
            "out_feature": str(row["out_feature"]),
        }
    )
    at = app.run()
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert at.button_group(key="tok_position").value == 3
    assert at.selectbox(key="tok_connection").value == (row["in_feature"], row["out_feature"])


def test_token_explorer_warns_about_a_bad_link(app):
    app.query_params.update({"run": "1", "position": "999"})
    at = app.run()
    at.switch_page(PAGES["tokens"]).run()
    assert not at.exception
    assert any("Position 999" in w.value for w in at.warning)


def test_jsae_vs_plain(app, loaded):
    app.query_params["layer"] = "1"
    at = run(app.run())
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    shown = [m for m in at.metric if m.label == "Fraction |J| > ε"]
    for metric, kind in zip(shown, ("jsae", "plain"), strict=True):
        table = expected_table(loaded, 1, kind)
        assert metric.value == f"{jacobian_sparsity(table['jacobian'].to_numpy(), 0.01):.1%}"
    spec, *sweeps, capture, _joint, _kl = chart_specs(at)
    assert marks(spec) == ["bar", "rule"]
    assert len(sweeps) == len(explore.SWEEP_SHOWN) and marks(capture)[-1] == "rule"
    assert len(at.dataframe) == 4  # the matched fraction, the downstream KL, both summaries


def test_jsae_vs_plain_at_a_layer_with_one_kind(app, loaded):
    at = run(app.run())  # layer 0: jsae only
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert any("Layer 0 has only a jsae pair" in i.value for i in at.info)
    at.button(key="cmp_switch_layer").click().run()
    no_problems(at)
    assert at.sidebar.selectbox(key="layer").value == 1
    assert len([m for m in at.metric if m.label == "Fraction |J| > ε"]) == 2


def test_jsae_vs_plain_with_a_single_kind_source(jsae_only_source, monkeypatch):
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, jsae_only_source)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert any("only jsae pairs" in i.value for i in at.info)


def test_each_page_is_served_at_its_files_name():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert list(PAGES_BY_URL) == [os.path.basename(p)[:-3] for p in PAGES.values()]
    for url_path, spec in PAGES_BY_URL.items():
        assert spec.url_path == url_path and spec.script.endswith(f"/{url_path}.py")
        assert os.path.isfile(os.path.join(root, spec.script))
    assert DEFAULT_PAGE == "causal_sparsity" and TOKEN_PAGE in PAGES_BY_URL


def test_no_pages_folder_beside_the_entry_script():
    # Streamlit runs an app with a pages/ folder beside its main script in its legacy
    # multipage mode (a requested page script runs alone, outside the frame).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert os.path.isfile(os.path.join(root, "streamlit_app.py"))
    assert not os.path.exists(os.path.join(root, "pages"))


def test_randomized_controls_are_offered_with_the_papers_labels(tmp_path, monkeypatch):
    """A source holding the JSAE, the plain pair and both randomized-LLM controls: the kind
    picker lists all four as the paper labels them, and a control's run reads its own
    randomized model (the numbers are the package's on that model, not on the real one)."""
    model = tiny_model()
    randomized = tiny_model()
    with torch.no_grad():
        for name, p in randomized.named_parameters():
            if "W_" in name:
                p.normal_(0, 0.2)
    pairs = {kind: {1: tiny_pair(model, 1, kind=kind)} for kind in PAIR_KINDS}
    controls = {(k, 1): randomized for k in PAIR_KINDS if k.endswith("_randomized")}
    folder = str(save_source(tmp_path / "src", model, pairs, pair_models=controls))
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, folder)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"layer": "1", "kind": "jsae_randomized", "run": "1"})
    at.run()
    no_problems(at)
    kind = at.sidebar.radio(key="kind")
    assert kind.options == [KIND_LABELS[k] for k in PAIR_KINDS]
    assert kind.options[2:] == ["JSAEs (Randomized LLM)", "Traditional SAEs (Randomized LLM)"]
    assert kind.value == "jsae_randomized"
    text = first_prompt()[1]
    on_control = ablate(randomized, pairs["jsae_randomized"][1], text).table
    on_model = ablate(model, pairs["jsae_randomized"][1], text).table
    n = summarize(on_control).loc["important", "connections"]
    assert n != summarize(on_model).loc["important", "connections"], "the test must tell"
    assert metrics(at)["Important connections"] == f"{n:,}"
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert [h.value for h in at.subheader][:2] == [
        "JSAEs (Randomized LLM)",
        "Traditional SAEs (Randomized LLM)",
    ]
