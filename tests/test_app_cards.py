"""The token explorer's connection graph and feature-card panel, driven with AppTest on a
tiny source folder whose cards were built by the library (``jsae.features``): what the page
shows is the library's graph and cards for the selected connection, the selection
round-trips through the URL, and a source without cards gets the one command that builds
them."""

import json
import shutil
from types import SimpleNamespace

import pytest
import streamlit as st
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df
from streamlit.testing.v1 import AppTest

from app.clicks import clicked_edge
from jsae import charts, explore
from jsae.analysis.graph import connection_graph
from jsae.features import FeatureCards, build_command, default_cards_root, feature_cards
from jsae.loading import load_source, save_source
from tests.helpers import TEXT, tiny_model, tiny_pairs
from tests.test_app import APP, PAGES, TIMEOUT, first_prompt, no_problems, run


@pytest.fixture(scope="module")
def carded_source(tmp_path_factory):
    model = tiny_model()
    path = save_source(tmp_path_factory.mktemp("cards") / "src", model, tiny_pairs(model))
    source = load_source(str(path))
    rows = model.to_tokens([TEXT] * 4, prepend_bos=True)[:, :48]
    feature_cards(source, 0, "jsae", rows, progress=False)  # into path/cards, where the app looks
    return str(path)


@pytest.fixture
def app(carded_source, monkeypatch):
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, carded_source)
    st.cache_resource.clear()
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def expected_rows(source_dir: str, position: int):
    source = load_source(source_dir)
    key = explore.RunKey(source_dir, None, 0, "jsae", "unit", 1.0, first_prompt()[1])
    return explore.token_connections(explore.run_ablation(source, key).split(0.01), position)


def shown_cards(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric if ": " in m.label}


def test_token_explorer_shows_the_graph_and_both_cards(app, carded_source):
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    position = at.button_group(key="tok_position").value
    in_f, out_f = at.selectbox(key="tok_connection").value
    headers = [h.value for h in at.subheader]
    assert f"Feature cards: in_feature {in_f} → out_feature {out_f}" in headers
    cards = FeatureCards.find(default_cards_root(carded_source), 0, "jsae")
    tokenizer = load_source(carded_source).tokenizer
    for side, feature in (("in", in_f), ("out", out_f)):
        card = cards.card(side, feature, tokenizer)
        assert shown_cards(at)[f"{side} {feature}: fires"] == f"{card.fires:,}"
    rows = expected_rows(carded_source, position)
    graph = connection_graph(rows, 0.01, labels=lambda s, f: cards.label(s, f, tokenizer))
    assert graph.summary() in [c.value for c in at.caption]
    chart = next(c.proto for c in at.get("vega_lite_chart") if c.proto.id.endswith("tok_graph"))
    assert json.loads(chart.spec)["params"][0]["name"] == charts.EDGE_SELECTION
    frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.datasets]
    edges = next(f for f in frames if "abs_jacobian" in f.columns)
    assert sorted(zip(edges.in_feature, edges.out_feature, strict=True)) == sorted(
        zip(graph.edges.in_feature, graph.edges.out_feature, strict=True)
    )
    labels = set().union(*(set(f["label"]) for f in frames if "label" in f.columns))
    assert labels == set(graph.nodes["label"])
    names = [b.label for b in at.get("download_button")]
    assert "Download the graph (circuit-tracer JSON)" in names


def test_the_selected_connections_cards_come_from_the_url(app, carded_source):
    rows = expected_rows(carded_source, 3)
    row = rows.sort_values("abs_jacobian").iloc[0]  # the weakest: not the page's default
    params = {"run": "1", "position": "3", "in_feature": str(row["in_feature"])}
    params["out_feature"] = str(row["out_feature"])
    app.query_params.update(params)
    at = app.run()
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    want = f"Feature cards: in_feature {row['in_feature']} → out_feature {row['out_feature']}"
    assert want in [h.value for h in at.subheader]
    assert f"in {row['in_feature']}: fires" in shown_cards(at)
    assert at.query_params["in_feature"] == str(row["in_feature"])
    assert at.query_params["out_feature"] == str(row["out_feature"])


def test_a_source_without_cards_names_the_command(carded_source, tmp_path, monkeypatch):
    model = tiny_model()
    bare = str(save_source(tmp_path / "bare", model, tiny_pairs(model)))
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, bare)
    st.cache_resource.clear()
    at = run(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert any(build_command(bare, 0, "jsae") in box.value for box in at.info)


def test_cards_of_other_weights_are_flagged(carded_source, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(carded_source, copy)
    meta_path = copy / "cards" / "jsae" / "layer_0" / "cards.json"
    meta = json.loads(meta_path.read_text())
    meta["identity"]["pair"] = "0" * 16  # as if built before the pair was retrained
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, str(copy))
    st.cache_resource.clear()
    at = run(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert any(
        "built for other weights" in w.value and build_command(str(copy), 0, "jsae") in w.value
        for w in at.warning
    )


def test_a_click_on_an_edge_reads_its_connection():
    event = SimpleNamespace(
        selection={charts.EDGE_SELECTION: [{"in_feature": 3, "out_feature": 7}]}
    )
    assert clicked_edge(event) == (3, 7)
    assert clicked_edge(SimpleNamespace(selection={charts.EDGE_SELECTION: []})) is None
    assert clicked_edge(None) is None
    assert json.dumps(clicked_edge(event))


def test_picking_a_top_connection_shows_its_cards(app):
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    top = at.dataframe[0].value
    row = top.iloc[3]
    at.session_state["tok_top"] = {"selection": {"rows": [3], "columns": [], "cells": []}}
    at.run()
    no_problems(at)
    want = (int(row["in_feature"]), int(row["out_feature"]))
    assert at.selectbox(key="tok_connection").value == want
    assert f"Feature cards: in_feature {want[0]} → out_feature {want[1]}" in [
        h.value for h in at.subheader
    ]
    assert at.query_params["in_feature"] == str(want[0])


def test_selecting_a_miss_shows_its_cards(app, carded_source):
    at = run(app.run())
    at.switch_page(PAGES["effect"]).run()
    no_problems(at)
    source = load_source(carded_source)
    key = explore.RunKey(carded_source, None, 0, "jsae", "unit", 1.0, first_prompt()[1])
    misses = explore.largest_misses(explore.run_ablation(source, key).split(0.01), n=20)
    cards = FeatureCards.find(default_cards_root(carded_source), 0, "jsae")
    for picked in (2, 0):  # a click on a row, then another: the cards follow each
        row = misses.iloc[picked]
        at.session_state["miss_table"] = {
            "selection": {"rows": [picked], "columns": [], "cells": []}
        }
        at.run()
        no_problems(at)
        in_f, out_f = int(row["in_feature"]), int(row["out_feature"])
        assert at.selectbox(key="miss_pick").value == picked
        headers = [h.value for h in at.subheader]
        assert f"Feature cards: in_feature {in_f} → out_feature {out_f}" in headers
        for side, feature in (("in", in_f), ("out", out_f)):
            card = cards.card(side, feature, source.tokenizer)
            assert shown_cards(at)[f"{side} {feature}: fires"] == f"{card.fires:,}"
    # The picker moves on its own while the table still reports its last row.
    at.selectbox(key="miss_pick").set_value(3).run()
    row = misses.iloc[3]
    assert at.selectbox(key="miss_pick").value == 3
    want = f"Feature cards: in_feature {row['in_feature']} → out_feature {row['out_feature']}"
    assert want in [h.value for h in at.subheader]


def test_clicking_a_heatmap_cell_shows_its_cards(app, carded_source):
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    position = at.button_group(key="tok_position").value
    rows = expected_rows(carded_source, position)
    row = rows.sort_values("abs_jacobian").iloc[0]  # the weakest: not the page's default
    want = (int(row["in_feature"]), int(row["out_feature"]))
    assert at.selectbox(key="tok_connection").value != want
    point = {"in_feature": want[0], "out_feature": want[1]}
    at.session_state["tok_heatmap"] = {"selection": {charts.CELL_SELECTION: [point]}}
    at.run()
    no_problems(at)
    assert at.selectbox(key="tok_connection").value == want
    assert f"Feature cards: in_feature {want[0]} → out_feature {want[1]}" in [
        h.value for h in at.subheader
    ]
    cards = FeatureCards.find(default_cards_root(carded_source), 0, "jsae")
    card = cards.card("out", want[1], load_source(carded_source).tokenizer)
    assert shown_cards(at)[f"out {want[1]}: fires"] == f"{card.fires:,}"
    assert at.query_params["in_feature"] == str(want[0])
