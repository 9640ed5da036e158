"""Chart marks that must read on both themes: every colour of the charts' palette
(``jsae.charts.palette``), and every colour literal in a chart's spec (marks, strokes,
conditions, scale ranges), is checked for WCAG contrast against Streamlit's light background
(#ffffff) and dark background (#0e1117), computed here from the WCAG 2 formula; the colours of
each categorical scale must stay apart (CIELAB ΔE*76, computed here); and no chart module
writes a colour of its own outside the palette."""

import ast
import json
import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jsae import charts, explore
from jsae.charts import palette
from jsae.charts.causal import RANDOM_COLOR
from jsae.charts.common import DIFF_INTERPOLATE, DIFF_RAMP, OTHER_KIND_COLOR
from jsae.charts.effect import POINT_COLORS

LIGHT, DARK = "#ffffff", "#0e1117"
MIN_CONTRAST = 3.0  # WCAG's floor for graphical objects


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a #rrggbb colour."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_contrast_formula():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_the_backgrounds_are_streamlits():
    assert (palette.LIGHT_BACKGROUND, palette.DARK_BACKGROUND) == (LIGHT, DARK)


@pytest.mark.parametrize("colour", sorted(set(palette.PALETTE.values())), ids=str)
def test_every_palette_colour_reads_on_both_backgrounds(colour):
    assert contrast(colour, LIGHT) >= MIN_CONTRAST
    assert contrast(colour, DARK) >= MIN_CONTRAST


def lab(colour: str) -> np.ndarray:
    """CIELAB (D65) of a #rrggbb colour: sRGB linearised, to XYZ, to L*a*b*."""
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    )
    xyz = to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


MIN_DELTA_E = 20.0  # well past "just noticeable" (ΔE ≈ 2): categories told apart at a glance

CATEGORIES = {
    "experiments": charts.EXPERIMENT_COLORS,
    "pair kinds": [*charts.KIND_COLORS, OTHER_KIND_COLOR, RANDOM_COLOR],
    "diff parts": list(charts.PART_COLORS.values()),
    "scatter points": [*POINT_COLORS, charts.INK],
    "sets removed together": charts.SET_COLORS,
    "faithfulness orders": list(charts.ORDER_COLORS.values()),
    "heatmap outline vs exits": [charts.HIGHLIGHT, charts.EXIT_COLOR, charts.INK],
    "graph edges vs the picked one": [*DIFF_RAMP, charts.HIGHLIGHT],
}


@pytest.mark.parametrize(("name", "colours"), list(CATEGORIES.items()))
def test_every_data_colour_reads_on_both_backgrounds(name, colours):
    for colour in colours:
        assert contrast(colour, LIGHT) >= MIN_CONTRAST, (name, colour)
        assert contrast(colour, DARK) >= MIN_CONTRAST, (name, colour)


@pytest.mark.parametrize(("name", "colours"), list(CATEGORIES.items()))
def test_the_categories_of_a_chart_stay_apart(name, colours):
    for a, b in combinations(colours, 2):
        assert np.linalg.norm(lab(a) - lab(b)) >= MIN_DELTA_E, (name, a, b)


def test_the_lab_conversion():
    np.testing.assert_allclose(lab("#ffffff"), [100, 0, 0], atol=0.02)
    np.testing.assert_allclose(lab("#ff0000"), [53.24, 80.09, 67.20], atol=0.05)


def test_no_chart_module_writes_a_colour_of_its_own():
    """Colour literals live in ``palette.py`` only, so the checks above cover every one."""
    folder = Path(charts.__file__).parent
    for path in folder.glob("*.py"):
        if path.name != "palette.py":
            found = re.findall(r"#[0-9a-fA-F]{6}\b", path.read_text())
            assert not found, (path.name, found)


TEXT_CONTRAST = 4.25  # one colour reaches at most about 4.35 on both backgrounds


def test_chart_text_reads_on_both_backgrounds():
    assert contrast(palette.TEXT, LIGHT) >= TEXT_CONTRAST
    assert contrast(palette.TEXT, DARK) >= TEXT_CONTRAST


def test_every_text_mark_names_its_colour():
    """Vega draws a text mark black unless told: invisible on the dark theme (the graph's
    node labels and the faithfulness score were)."""
    folder = Path(charts.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "mark_text":
                assert "color" in {k.arg for k in node.keywords}, (path.name, node.lineno)


def mark_colours(chart) -> set[str]:
    """The colour literals a spec gives marks directly (``color``, ``stroke``, ``fill`` and
    condition values), data colours from scales left out."""
    text = json.dumps(chart.to_dict())
    found = re.findall(r'"(?:color|stroke|fill|value)": "(#[0-9a-fA-F]{6})"', text)
    return set(found)


def reference_charts():
    """The charts with reference marks the issue found vanishing on the dark theme."""
    rng = np.random.default_rng(0)
    n = 40
    table = pd.DataFrame(
        {
            "predicted": rng.normal(size=n),
            "diff": rng.normal(size=n),
            "jacobian": rng.normal(size=n),
            "exited": rng.random(n) < 0.2,
            "important": rng.random(n) < 0.5,
            "position": np.arange(n),
            "token": ["t"] * n,
            "in_feature": np.arange(n),
            "out_feature": np.arange(n),
        }
    )
    yield "eps rule", charts.eps_rule(0.01)
    yield "effect scatter", charts.effect_scatter(table, explore.effect_range(table))


@pytest.mark.parametrize(("name", "chart"), list(reference_charts()))
def test_reference_marks_read_on_both_themes(name, chart):
    colours = mark_colours(chart)
    assert colours, name
    for colour in colours:
        assert contrast(colour, LIGHT) >= MIN_CONTRAST, (name, colour)
        assert contrast(colour, DARK) >= MIN_CONTRAST, (name, colour)


def test_the_graph_edges_read_on_both_themes_at_every_diff():
    """The edge colour scale is ``DIFF_RAMP`` through 0, interpolated in CIELAB: L* then
    moves linearly between stops that each read on both backgrounds, so every edge does
    (the red–blue scheme it replaced was white at 0, invisible on the light theme)."""
    rng = np.random.default_rng(1)
    n = 6
    segments = pd.DataFrame(
        {
            "in_feature": np.arange(n),
            "out_feature": np.arange(n) + 10,
            "in_row": np.arange(n),
            "out_row": np.arange(n),
            "jacobian": rng.normal(size=n),
            "abs_jacobian": rng.random(n),
            "diff": [-2.0, -0.5, 0.0, 1e-6, 0.3, 1.0],
            "exited": [True, False, False, False, False, False],
        }
    )
    nodes = pd.DataFrame(
        {
            "side": ["in", "out"],
            "feature": [0, 10],
            "row": [0, 0],
            "x": [0.0, 1.0],
            "activation": [1.0, 1.0],
            "label": ["in 0", "out 10"],
        }
    )
    spec = charts.connection_graph_chart(segments, nodes).to_dict()
    scale = spec["layer"][0]["encoding"]["color"]["scale"]
    assert "scheme" not in scale
    assert scale["domain"] == [-2.0, 0.0, 2.0] and scale["range"] == DIFF_RAMP
    assert scale["interpolate"] == DIFF_INTERPOLATE == "lab"
    for colour in scale["range"]:
        assert contrast(colour, LIGHT) >= MIN_CONTRAST, colour
        assert contrast(colour, DARK) >= MIN_CONTRAST, colour
