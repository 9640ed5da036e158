"""The analysis' chart builders, through ``chart.to_dict()``: the mass-capture curves (one
colour per pair kind, dashed oracle, the random diagonal, the headline fraction marked) and
the ε sweep (one chart per statistic, both kinds, log ε axis, ε marked)."""

import math

import numpy as np
import pandas as pd
import pytest

from jsae import charts, explore


def data_of(spec: dict, node: dict) -> list[dict]:
    """The inline rows a layer draws (its own data, else its parent's)."""
    return spec["datasets"][node.get("data", spec.get("data"))["name"]]


def marks(spec: dict) -> list[str]:
    return [
        layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
        for layer in spec["layer"]
    ]


@pytest.fixture
def capture():
    fractions = np.linspace(0, 1, 5)
    curves = {
        "jsae": pd.DataFrame(
            {"fraction": fractions, "by_jacobian": fractions**0.8, "oracle": fractions**0.2}
        ),
        "plain": pd.DataFrame(
            {"fraction": fractions, "by_jacobian": fractions**0.3, "oracle": fractions**0.1}
        ),
    }
    return explore.capture_frame(curves)


def test_capture_curves(capture):
    spec = charts.capture_curves(capture, at=0.2).to_dict()
    assert marks(spec) == ["line", "line", "rule"]
    diagonal, lines, rule = spec["layer"]
    # The random ranking's diagonal from (0, 0) to (1, 1).
    assert [(r["fraction"], r["share"]) for r in data_of(spec, diagonal)] == [(0, 0), (1, 1)]
    enc = lines["encoding"]
    assert enc["x"]["field"] == "fraction" and enc["y"]["field"] == "share"
    assert enc["x"]["scale"]["domain"] == [0, 1] and enc["y"]["scale"]["domain"] == [0, 1]
    assert enc["color"]["field"] == "kind"
    assert enc["color"]["scale"]["domain"] == charts.KIND_ORDER
    assert enc["color"]["scale"]["range"] == charts.KIND_COLORS
    assert enc["strokeDash"]["field"] == "ranking"
    assert enc["strokeDash"]["scale"]["domain"] == list(explore.CAPTURE_RANKINGS)
    dashes = enc["strokeDash"]["scale"]["range"]
    assert dashes[0] == [1, 0] and dashes[1] != [1, 0]  # by |J| solid, the oracle dashed
    rows = pd.DataFrame(data_of(spec, lines))
    pd.testing.assert_frame_equal(
        rows[["kind", "fraction", "ranking", "share"]], capture, check_dtype=False
    )
    assert data_of(spec, rule)[0]["fraction"] == 0.2
    assert rule["encoding"]["x"]["field"] == "fraction"
    assert "rule" not in marks(charts.capture_curves(capture).to_dict())


def test_capture_curves_colour_an_unknown_kind_grey(capture):
    spec = charts.capture_curves(capture.assign(kind="jsae_randomized")).to_dict()
    scale = spec["layer"][1]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["jsae_randomized"] and len(scale["range"]) == 1


@pytest.fixture
def sweep():
    rng = np.random.default_rng(0)
    tables = {}
    for kind, scale in (("jsae", 1.0), ("plain", 30.0)):
        jac = rng.lognormal(-3, 1.5, 500) * scale
        tables[kind] = pd.DataFrame(
            {
                "position": np.arange(500) % 10 + 1,
                "jacobian": jac,
                "predicted": -jac,
                "diff": -jac * rng.uniform(0.5, 1.5, 500),
                "exited": rng.random(500) < 0.05,
            }
        )
    return explore.sweep_view(tables, 0.05)


def test_eps_sweep_charts(sweep):
    eps = 0.003
    built = charts.eps_sweep_charts(sweep, eps)
    assert len(built) == len(explore.SWEEP_SHOWN)
    for chart, (statistic, title) in zip(built, explore.SWEEP_SHOWN.items(), strict=True):
        spec = chart.to_dict()
        assert marks(spec) == ["line", "rule"]
        lines, rule = spec["layer"]
        enc = lines["encoding"]
        assert enc["x"]["field"] == "eps" and enc["x"]["scale"]["type"] == "log"
        lo, hi = enc["x"]["scale"]["domain"]
        assert lo == pytest.approx(min(sweep["eps"].min(), eps)) and hi == sweep["eps"].max()
        assert enc["y"]["field"] == "value" and enc["y"]["title"] == title
        y_type = enc["y"]["scale"].get("type", "linear")
        assert y_type == ("log" if statistic in explore.LOG_SWEEP else "linear")
        assert enc["color"]["field"] == "kind"
        assert enc["color"]["scale"]["domain"] == ["jsae", "plain"]
        # The data: this statistic's rows of the sweep, for both kinds.
        rows = pd.DataFrame(data_of(spec, lines))
        expected = sweep[sweep["statistic"] == statistic]
        assert set(rows["kind"]) == {"jsae", "plain"}
        np.testing.assert_allclose(rows["value"], expected["value"])
        np.testing.assert_allclose(rows["eps"], expected["eps"])
        # The page's ε, marked.
        assert data_of(spec, rule) == [{"eps": eps, "label": "ε = 0.003"}]
        assert rule["encoding"]["x"]["field"] == "eps"


def test_eps_rule_on_a_log10_axis():
    spec = charts.eps_rule(0.01, log10=True).to_dict()
    rows = data_of(spec, spec)
    assert rows[0]["log_eps"] == pytest.approx(math.log10(0.01)) and rows[0]["label"] == (
        "ε = 0.01"
    )
    assert spec["encoding"]["x"]["field"] == "log_eps"


def test_kind_colors_are_positional_for_a_sources_own_kinds():
    """The paper's kinds keep their colours; a source's own kinds take them by position
    (its reference kind the JSAE's), further kinds a dark grey."""
    assert charts.kind_colors(["plain", "jsae", "plain"]) == (
        ["jsae", "plain"],
        charts.KIND_COLORS,
    )
    assert charts.kind_colors(["true", "rotated", "true"]) == (
        ["true", "rotated"],
        charts.KIND_COLORS,
    )
    domain, colors = charts.kind_colors(["x", "jsae", "y"])
    assert domain == ["jsae", "x", "y"] and colors == [*charts.KIND_COLORS, "#0c8599"]
