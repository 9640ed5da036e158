"""The analysis on the explorer's pages, driven headlessly with AppTest on the tiny source:
the causal sparsity page's verdict, its reasons, the pair's health, the statistics table, the
mass-capture curve and τ (a setting kept in the URL); JSAE vs plain's AUC, ratio without
exits and verdict per pair, its ε sweep, matched-fraction table and capture curves.

The expected numbers are computed here: the verdict with ``jsae.analysis.analyse`` on the
engine's own result, the AUC with scikit-learn, fractions and ε with numpy.
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from app import cache
from jsae import explore
from jsae.analysis import DEFAULT_TAU, effect_statistics
from jsae.pair import KIND_LABELS
from tests.test_app import (  # noqa: F401  (module-scoped fixtures)
    PAGES,
    app,
    boxes,
    chart_specs,
    expected_analysis,
    expected_table,
    loaded,
    metrics,
    no_problems,
    run,
    tiny_source,
)

BOX_KINDS = {"success": "success", "info": "info", "warning": "warning"}


def statistics_frame(at, index: int = 0) -> pd.DataFrame:
    """The causal sparsity page's statistics table (``index`` 1: the pair's health),
    indexed by statistic."""
    return at.table[index].value.set_index("Statistic")


def chart_data(at, index: int) -> list[pd.DataFrame]:
    """The rows each layer of the page's ``index``-th chart draws."""
    chart = at.get("vega_lite_chart")[index].proto
    data = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.datasets}
    spec = json.loads(chart.spec)
    default = spec.get("data", {}).get("name")
    return [data[layer.get("data", {}).get("name", default)] for layer in spec["layer"]]


def auc(table: pd.DataFrame, tau: float) -> float:
    moved = np.abs(table["diff"].to_numpy(np.float64)) > tau
    return roc_auc_score(moved, np.abs(table["jacobian"].to_numpy(np.float64)))


def assert_verdict_shown(at, verdict) -> None:
    """The verdict's sentence in the box its level (or perversity) asks for."""
    style, text = explore.verdict_box(verdict)
    shown = [box.value for box in getattr(at, BOX_KINDS[style])]
    assert any(text in value for value in shown), (style, text, shown)
    if verdict.perverse:
        assert any(value.startswith(f"**{explore.PERVERSE_LEAD}.**") for value in shown)


def test_causal_sparsity_shows_the_analysis(app, loaded):  # noqa: F811
    at = run(app.run())
    no_problems(at)
    found = expected_analysis(loaded)
    assert_verdict_shown(at, found.verdict)
    (why,) = [e for e in at.expander if e.label == "Why?"]
    listed = " ".join(m.value for m in why.markdown)
    for reason in found.verdict.reasons:
        assert reason in listed
    warnings = [w.value for w in at.warning]
    for warning in found.health.warnings if found.health is not None else ():
        assert warning in warnings
    # The statistics table: effect_statistics' numbers, the AUC also against scikit-learn.
    table = expected_table(loaded)
    stats = effect_statistics(table, 0.01)
    shown = statistics_frame(at)
    assert shown.loc["auc", "Value"] == f"{stats.auc:.4g}"
    assert float(shown.loc["auc", "Value"]) == pytest.approx(auc(table, DEFAULT_TAU), rel=1e-3)
    lo, hi = stats.auc_ci
    assert shown.loc["auc", "95% interval"] == f"{lo:.3g}–{hi:.3g}"
    assert shown.loc["connections", "Value"] == f"{len(table):,}"
    assert shown.loc["connections", "95% interval"] == ""
    # The pair's health, in an expander below the statistics.
    health = statistics_frame(at, 1)
    assert health.loc["output_cv", "Value"] == f"{found.health.output_cv:.4g}"
    # The mass-capture curve: by |J| and the oracle, the headline fraction marked.
    assert len(chart_specs(at)) == 5  # the histograms, the decomposition, the joint curves
    _diagonal, lines, rule = chart_data(at, 4)
    by_j = lines[lines["ranking"] == explore.BY_JACOBIAN]
    np.testing.assert_allclose(by_j["share"], stats.capture_curve["by_jacobian"], rtol=1e-5)
    d = np.sort(np.abs(table["diff"].to_numpy(np.float64)))[::-1]
    oracle = lines[lines["ranking"] == explore.ORACLE].set_index("fraction")["share"]
    assert oracle.loc[0.5] == pytest.approx(d[: len(d) // 2].sum() / d.sum(), rel=1e-3)
    assert rule["fraction"].tolist() == [stats.capture_fraction]
    assert at.number_input(key="tau").value == DEFAULT_TAU
    assert "tau" not in at.query_params  # the default is left out of the link


def test_tau_resets_the_statistics_and_the_verdict_and_stays_in_the_url(app, loaded):  # noqa: F811
    at = run(app.run())
    at.number_input(key="tau").set_value(0.02).run()
    no_problems(at)
    table = expected_table(loaded)
    shown = float(statistics_frame(at).loc["auc", "Value"])
    assert shown == pytest.approx(auc(table, 0.02), rel=1e-3)
    assert_verdict_shown(at, expected_analysis(loaded, tau=0.02).verdict)
    assert at.query_params["tau"] == "0.02"
    at.switch_page(PAGES["tokens"]).run()  # τ is kept on a page without its input…
    no_problems(at)
    assert at.query_params["tau"] == "0.02"
    at.switch_page(PAGES["sparsity"]).run()  # …and comes back with it
    assert at.number_input(key="tau").value == 0.02


def test_tau_from_the_url(app, loaded):  # noqa: F811
    app.query_params.update({"run": "1", "tau": "0.05"})
    at = app.run()
    no_problems(at)
    assert at.number_input(key="tau").value == 0.05
    table = expected_table(loaded)
    shown = float(statistics_frame(at).loc["auc", "Value"])
    assert shown == pytest.approx(auc(table, 0.05), rel=1e-3)


def test_a_bad_tau_in_the_url_warns(app):  # noqa: F811
    app.query_params.update({"tau": "-3", "run": "1"})
    at = app.run()
    assert not at.exception and not at.error
    assert any("tau='-3'" in w.value for w in at.warning)
    assert at.number_input(key="tau").value == DEFAULT_TAU
    assert "tau" not in at.query_params


@pytest.fixture
def patched_analysis(monkeypatch):
    """Replace ``app.cache``'s ``analyse`` (with an empty analysis cache before and after,
    so no other test reads what it returned)."""
    cache.get_analysis.clear()

    def patch(replacement):
        monkeypatch.setattr(cache, "analyse", replacement)

    yield patch
    cache.get_analysis.clear()


def test_a_perverse_verdict_is_a_warning_with_the_pairs_health(app, patched_analysis):  # noqa: F811
    real = cache.analyse

    def perverse(*args, **kwargs):
        found = real(*args, **kwargs)
        verdict = dataclasses.replace(found.verdict, level="no", perverse=True)
        health = dataclasses.replace(found.health, warnings=("The output code is flat.",))
        return dataclasses.replace(found, verdict=verdict, health=health)

    patched_analysis(perverse)
    at = run(app.run())
    no_problems(at)
    (box,) = [w.value for w in at.warning if explore.PERVERSE_LEAD in w.value]
    assert box.startswith(f"**{explore.PERVERSE_LEAD}.** Partly")  # the patched sentence
    assert "The output code is flat." in [w.value for w in at.warning]


def test_statistics_errors_show_briefly(app, patched_analysis):  # noqa: F811
    def broken(*args, **kwargs):
        raise RuntimeError("bootstrap went wrong")

    patched_analysis(broken)
    at = run(app.run())
    assert not at.exception
    assert any("computing the statistics" in e.value for e in at.error)
    assert "Ratio of the two" in metrics(at)  # the rest of the page is drawn


def test_jsae_vs_plain_shows_both_analyses(app, loaded):  # noqa: F811
    app.query_params["layer"] = "1"
    at = run(app.run())
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    eps = 0.01
    tables = {kind: expected_table(loaded, 1, kind) for kind in explore.COMPARED}
    aucs = [m.value for m in at.metric if m.label == "AUC"]
    ratios = [m for m in at.metric if m.label == "Ratio without exits"]
    for kind, shown_auc, ratio in zip(explore.COMPARED, aucs, ratios, strict=True):
        found = expected_analysis(loaded, 1, kind)
        assert shown_auc == explore.format_number(auc(tables[kind], DEFAULT_TAU), 3)
        assert ratio.value == explore.format_number(found.statistics.ratio_without_exits, 3)
        assert_verdict_shown(at, found.verdict)
    # The ε sweep: one chart per statistic, ε on a log axis, the page's ε marked; the
    # fraction important is numpy's at each ε of the grid.
    specs = chart_specs(at)
    sweeps = specs[1 : 1 + len(explore.SWEEP_SHOWN)]
    for spec in sweeps:
        assert spec["layer"][0]["encoding"]["x"]["scale"]["type"] == "log"
    index = 1 + list(explore.SWEEP_SHOWN).index("fraction_important")
    lines, rule = chart_data(at, index)
    assert rule["eps"].tolist() == [eps]
    for row in lines.itertuples():
        jac = np.abs(tables[row.kind]["jacobian"].to_numpy())
        assert row.value == pytest.approx((jac > row.eps).mean())
    assert set(lines["kind"]) == set(explore.COMPARED)
    # The matched fraction: both split at the JSAE's share at ε, each at its own ε.
    (matched,) = [d.value for d in at.dataframe if "eps" in d.value.columns]
    matched = matched.set_index("pair")
    jac = {kind: np.abs(t["jacobian"].to_numpy()) for kind, t in tables.items()}
    share = (jac["jsae"] > eps).mean()
    jsae, plain = (matched.loc[KIND_LABELS[kind]] for kind in explore.COMPARED)
    assert jsae["eps"] == pytest.approx(jac["jsae"][jac["jsae"] <= eps].max())
    k = round(share * len(jac["plain"]))
    assert plain["eps"] == pytest.approx(np.sort(jac["plain"])[::-1][k])
    assert jsae["fraction_important"] == pytest.approx(share)
    assert plain["fraction_important"] == pytest.approx(k / len(jac["plain"]))
    captions = " ".join(c.value for c in at.caption)
    assert "One ε selects very different fractions" in captions
    # The capture curves, one colour per pair kind.
    capture = specs[-3]  # above the joint ablation's curves and the downstream KL
    assert capture["layer"][1]["encoding"]["color"]["scale"]["domain"] == list(explore.COMPARED)
