"""Chart marks that must read on both themes: every colour literal in a chart's spec (marks,
strokes, conditions, scale ranges of reference marks) is checked for WCAG contrast against
Streamlit's light background (#ffffff) and dark background (#0e1117), computed here."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from jsae import charts, explore

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


@pytest.mark.parametrize("colour", [charts.INK, charts.HIGHLIGHT])
def test_the_theme_free_colours_read_on_both_backgrounds(colour):
    assert contrast(colour, LIGHT) >= MIN_CONTRAST
    assert contrast(colour, DARK) >= MIN_CONTRAST


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
