"""The explorer's decomposition panels, driven headlessly with AppTest on the tiny source:
the causal sparsity page's split of the movement and P(exit), the effect page's exits, the
token explorer's margins and its dose-response curve's un-gated line and top-k steps.

The expected numbers are computed here from the engine's table with numpy, not with the
functions the pages call.
"""

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from jsae import charts, explore
from jsae.dose import dose_response
from jsae.sandwich import Sandwich
from tests.test_app import (  # noqa: F401  (module-scoped fixtures)
    PAGES,
    app,
    chart_specs,
    expected_table,
    first_prompt,
    loaded,
    marks,
    metrics,
    no_problems,
    run,
    tiny_source,
)

SHORT = "The quick brown fox jumps."


def chart_rows(at, index: int) -> list[pd.DataFrame]:
    """The rows each layer of the page's ``index``-th chart draws."""
    chart = at.get("vega_lite_chart")[index].proto
    data = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.datasets}
    spec = json.loads(chart.spec)
    default = spec.get("data", {}).get("name")
    return [data[layer.get("data", {}).get("name", default)] for layer in spec["layer"]]


def test_causal_sparsity_splits_the_movement(app, loaded):  # noqa: F811
    at = run(app.run())
    no_problems(at)
    table = expected_table(loaded)
    parts = chart_specs(at)[1]
    assert marks(parts) == ["bar", "text"]
    bars = chart_rows(at, 1)[0]
    shown = metrics(at)
    for name, mask in (("important", table["important"]), ("unimportant", ~table["important"])):
        group = table[mask]
        masses = {p: np.abs(group[p].to_numpy(np.float64)).sum() for p in explore.PARTS}
        total = sum(masses.values())
        drawn = bars[bars["experiment"] == name].set_index("part")
        for part, mass in masses.items():
            assert drawn.loc[part, "share"] == pytest.approx(mass / total)
        exited = group["exited"].to_numpy(bool)
        label = name.capitalize()
        assert shown[f"{label} P(exit)"] == f"{exited.mean():.1%}"
        abs_diff = np.abs(group["diff"].to_numpy(np.float64))
        assert (
            shown[f"{label} |diff| from exits"] == f"{abs_diff[exited].sum() / abs_diff.sum():.1%}"
        )
    captions = " ".join(c.value for c in at.caption)
    assert "normalised to add up to 1" in captions
    # The downloads carry the decomposition's columns.
    for column in ("pre_diff", "curvature", "gate", "exited", "entered", "margin"):
        assert column in captions


def test_effect_page_colours_exits_apart(app, loaded):  # noqa: F811
    at = app.run()
    at.text_area(key="prompt_text").set_value(SHORT).run()
    run(at)
    at.switch_page(PAGES["effect"]).run()
    no_problems(at)
    table = expected_table(loaded, text=SHORT)
    assert table["exited"].any(), "the tiny source must have exits for this test"
    (spec,) = chart_specs(at)
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"][-1] == charts.EXIT_LABEL
    dots = chart_rows(at, 0)[0]
    assert (dots["group"] == charts.EXIT_LABEL).sum() == table["exited"].sum()
    assert dots["exited"].tolist() == table["exited"].tolist()
    misses = at.dataframe[0].value
    assert {"exited", "entered"} <= set(misses.columns)
    keys = ["position", "in_feature", "out_feature"]
    looked_up = misses[keys].merge(table, on=keys, how="left")  # each miss's own row
    assert misses["exited"].tolist() == looked_up["exited"].tolist()
    assert misses["entered"].tolist() == looked_up["entered"].tolist()
    unimportant = np.sort(np.abs(table.loc[~table["important"], "diff"].to_numpy()))[::-1]
    np.testing.assert_allclose(np.abs(misses["diff"]), unimportant[: len(misses)])


def connection_with_a_step(loaded, table):  # noqa: F811
    """A connection of the first prompt whose sweep leaves the top k, with its curve."""
    sandwich = Sandwich(loaded.model, loaded.pair(0))
    for position in sorted(table["position"].unique())[:6]:
        x = explore.token_input(loaded.model, 0, first_prompt()[1], int(position))
        rows = table[table["position"] == position]
        for r in rows.itertuples():
            dose = dose_response(sandwich, x, r.in_feature, r.out_feature)
            if not dose.curve["in_top_k"].all():
                return int(position), int(r.in_feature), int(r.out_feature), dose
    pytest.skip("no sweep of the tiny source leaves the top k")


def test_token_explorer_shows_margins_and_the_ungated_curve(app, loaded):  # noqa: F811
    table = expected_table(loaded)
    position, in_f, out_f, dose = connection_with_a_step(loaded, table)
    app.query_params.update(
        {"run": "1", "position": str(position), "in_feature": str(in_f), "out_feature": str(out_f)}
    )
    at = app.run()
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert at.selectbox(key="tok_connection").value == (in_f, out_f)
    # Margins: out_pre = out_act (positive here), runner-up = out_act − margin, per token.
    rows = table[table["position"] == position].drop_duplicates("out_feature")
    assert (rows["out_act"] > 0).all()
    runner_up = rows["out_act"] - rows["margin"]
    assert np.ptp(runner_up) < 1e-5  # one runner-up per token
    shown = at.dataframe[1].value
    expected = rows.sort_values("margin", kind="stable")
    assert shown["out_feature"].tolist() == expected["out_feature"].tolist()
    np.testing.assert_allclose(shown["out_pre"], expected["out_act"], rtol=1e-6)
    np.testing.assert_allclose(shown["margin"], expected["margin"], rtol=1e-6)
    np.testing.assert_allclose(shown["runner_up"], runner_up.median(), atol=1e-5)
    heat, margins, curve = chart_specs(at)[:3]  # then the connection graph
    assert marks(margins) == ["bar", "rule"]
    # The dose-response: the un-gated line and a rule where j leaves the top k.
    assert marks(curve) == ["line", "line", "line", "rule", "rule", "point"]
    _measured, pre, _tangent, steps, _actual, _point = chart_rows(at, 2)
    np.testing.assert_allclose(pre["out_act"], dose.curve["pre"], rtol=1e-6)
    inside = dose.curve["in_top_k"].to_numpy()
    a = dose.curve["in_act"].to_numpy()
    change = np.nonzero(inside[1:] != inside[:-1])[0]
    np.testing.assert_allclose(steps["in_act"], (a[change] + a[change + 1]) / 2)
    assert explore.LEAVES in set(steps["series"])
    domain = curve["layer"][0]["encoding"]["color"]["scale"]["domain"]
    assert charts.DOSE_PRE in domain and explore.LEAVES in domain
    assert at.query_params["out_feature"] == str(out_f)
