"""The explorer on the planted ground truth, driven headlessly with AppTest: the source picker
offers it, the kind picker its own kinds, the causal sparsity page the true-edge precision and
recall (checked against numpy on the planted graph), the token explorer marks the true edges
in its heatmap, and JSAE vs plain sets the true pair beside the rotated one.
"""

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from jsae import charts, explore
from jsae.analysis import DENSE_LEAD
from jsae.loading import PLANTED_SOURCE, load_source
from jsae.planted import PLANTED_KINDS
from tests.test_app import APP, PAGES, TIMEOUT, chart_specs, first_prompt, no_problems, run
from tests.test_app_statistics import chart_data


@pytest.fixture(scope="module")
def planted():
    return load_source(PLANTED_SOURCE)


@pytest.fixture
def app(monkeypatch):
    monkeypatch.delenv(explore.DEFAULT_SOURCE_ENV, raising=False)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["source"] = PLANTED_SOURCE
    return at


def planted_table(planted, kind="true"):
    """The connections of the app's run, and each one's planted edge weight (numpy)."""
    key = explore.RunKey(PLANTED_SOURCE, None, 0, kind, "unit", 1.0, first_prompt()[1])
    table = explore.run_ablation(planted, key).split(0.01)
    graph = planted.ground_truth.graph
    return table, graph.weights[table["in_feature"], table["out_feature"]]


def test_the_planted_source_is_offered_with_its_own_kinds(app):
    at = app.run()
    no_problems(at)
    picker = at.sidebar.radio(key="source_type")
    assert picker.value == PLANTED_SOURCE and "Planted ground truth" in picker.options
    kind = at.sidebar.radio(key="kind")
    assert kind.options == list(PLANTED_KINDS.labels.values()) and kind.value == "true"
    assert not at.warning, "the default kind (jsae) is no choice here: no warning"
    assert at.query_params["source"] == PLANTED_SOURCE and at.query_params["kind"] == "true"


def test_causal_sparsity_shows_precision_and_recall_against_the_true_edges(app, planted):
    at = run(app.run())
    no_problems(at)
    table, weight = planted_table(planted)
    edge = weight != 0
    (shown,) = [d.value for d in at.dataframe if "precision" in d.value.columns]
    shown = shown.set_index("rule")
    for rule, flagged in (
        ("important", np.abs(table["jacobian"].to_numpy()) > 0.01),
        ("moved", np.abs(table["diff"].to_numpy()) > 0.1),
    ):
        hits = int((flagged & edge).sum())
        assert shown.loc[rule, "flagged"] == flagged.sum()
        assert shown.loc[rule, "true_edges"] == edge.sum()
        assert shown.loc[rule, "hits"] == hits
        assert shown.loc[rule, "precision"] == pytest.approx(hits / flagged.sum())
        assert shown.loc[rule, "recall"] == pytest.approx(hits / edge.sum())
    assert any(b.value.startswith("Yes, the Jacobian's sparsity is sound") for b in at.success)
    (why,) = [e for e in at.expander if e.label == "Why?"]
    listed = " ".join(m.value for m in why.markdown)
    assert "against the true edges: precision 100.0%, recall 100.0%" in listed
    assert any("Off the true edges" in c.value for c in at.caption)
    at.sidebar.radio(key="kind").set_value("rotated").run()
    run(at)
    no_problems(at)
    assert any(box.value.startswith(f"**{DENSE_LEAD}.**") for box in [*at.info, *at.warning])


def test_token_explorer_marks_the_true_edges(app, planted):
    at = run(app.run())
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    table, weight = planted_table(planted)
    position = at.select_slider(key="tok_position").value  # byte tokens: a long prompt
    here = (table["position"] == position).to_numpy()
    expected = {
        (i, j)
        for i, j, w in zip(
            table["in_feature"][here], table["out_feature"][here], weight[here], strict=True
        )
        if w != 0
    }
    heat = chart_specs(at)[0]
    assert [layer["mark"]["type"] for layer in heat["layer"]] == ["rect", "point", "rect"]
    cells, diamonds, _ = chart_data(at, 0)
    assert len(cells) == here.sum()
    assert set(zip(diamonds["in_feature"], diamonds["out_feature"], strict=True)) == expected
    assert any("◇ marks the true edges" in c.value for c in at.caption)
    top = at.dataframe[0].value
    assert "true_edge" in top.columns


def test_jsae_vs_plain_sets_the_true_pair_beside_the_rotated_one(app, planted):
    at = run(app.run())
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    labels = [PLANTED_KINDS.label("true"), PLANTED_KINDS.label("rotated")]
    assert [h.value for h in at.subheader][:2] == labels
    shown = [m for m in at.metric if m.label == "Fraction |J| > ε"]
    for metric, kind in zip(shown, ("true", "rotated"), strict=True):
        table, _ = planted_table(planted, kind)
        assert metric.value == f"{np.mean(np.abs(table['jacobian'].to_numpy()) > 0.01):.1%}"
    assert any(b.value.startswith("Yes, the Jacobian's sparsity is sound") for b in at.success)
    assert any(b.value.startswith(f"**{DENSE_LEAD}.**") for b in [*at.info, *at.warning])
    histogram = chart_specs(at)[0]
    color = histogram["layer"][0]["encoding"]["color"]["scale"]
    assert color == {"domain": ["true", "rotated"], "range": charts.KIND_COLORS}
    capture = chart_specs(at)[-3]  # above the joint ablation's curves and the downstream KL
    assert capture["layer"][1]["encoding"]["color"]["scale"]["domain"] == ["true", "rotated"]
    curves = chart_specs(at)[-2]["encoding"]["color"]["scale"]  # the pairs, with their scores
    assert [name.split(":")[0] for name in curves["domain"]] == ["true", "rotated"]
    kl = chart_specs(at)[-1]["encoding"]["color"]["scale"]  # the downstream KL, last
    assert kl["domain"] == labels
    (matched,) = [d.value for d in at.dataframe if "eps" in d.value.columns]
    assert matched["pair"].tolist() == labels
    assert isinstance(matched, pd.DataFrame)
