import math
import warnings
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from jsae.errors import InputError
from jsae.stats import (
    Tolerance,
    format_summary,
    importance_ratio,
    jacobian_sparsity,
    summarize,
    within_tolerance,
)


def _table(diff, predicted, important):
    return pd.DataFrame({"diff": diff, "predicted": predicted, "important": important})


def test_summarize_against_a_hand_computed_example():
    table = _table(
        diff=[0.5, -1.0, 0.01, -0.03, 0.0],
        predicted=[0.5, -0.5, 0.0, 0.0, 0.0],
        important=[True, True, False, False, False],
    )
    s = summarize(table, Tolerance(atol=0.02, rtol=0.0))
    assert s.loc["important", "connections"] == 2 and s.loc["unimportant", "connections"] == 3
    assert s.loc["important", "mean_diff"] == pytest.approx(-0.25)
    assert s.loc["important", "mean_abs_diff"] == pytest.approx(0.75)
    assert s.loc["unimportant", "mean_abs_diff"] == pytest.approx(0.04 / 3)
    assert s.loc["unimportant", "median_abs_diff"] == pytest.approx(0.01)
    assert s.loc["important", "within_tolerance"] == pytest.approx(0.5)
    assert s.loc["unimportant", "within_tolerance"] == pytest.approx(2 / 3)
    assert s.loc["all", "connections"] == 5
    assert importance_ratio(s) == pytest.approx(0.75 / (0.04 / 3))


def test_p99_matches_numpy_and_tolerance_rule():
    rng = np.random.default_rng(0)
    diff = rng.normal(size=1000)
    predicted = diff + rng.normal(scale=0.05, size=1000)
    table = _table(diff, predicted, np.zeros(1000, dtype=bool))
    s = summarize(table)
    assert s.loc["unimportant", "p99_abs_diff"] == pytest.approx(np.quantile(np.abs(diff), 0.99))
    within = within_tolerance(table, Tolerance(0.01, 0.1))
    np.testing.assert_array_equal(within, np.isclose(diff, predicted, atol=0.01, rtol=0.1))


def test_empty_experiments_give_nan_not_errors():
    s = summarize(_table([0.1, 0.2], [0.0, 0.0], [True, True]))
    assert s.loc["unimportant", "connections"] == 0
    assert math.isnan(s.loc["unimportant", "mean_abs_diff"])
    assert math.isnan(importance_ratio(s))
    assert "—" in format_summary(s)


def test_format_summary_shows_both_experiments_side_by_side():
    """Hand-checked numbers, each in its experiment's column: important diffs 0.5 and -1.5
    (mean -0.5, mean |diff| 1, median 1), unimportant 0.25 (within tolerance of 0.25)."""
    table = _table([0.5, -1.5, 0.25], [0.5, 0.0, 0.25], [True, True, False])
    text = format_summary(summarize(table))
    header, *rows = text.splitlines()
    assert header.split() == ["Important", "Unimportant", "All"]
    shown = {row.rsplit(maxsplit=3)[0].strip(): row.rsplit(maxsplit=3)[1:] for row in rows}
    assert shown["Connections"] == ["2", "1", "3"]
    assert shown["Mean diff"] == ["-0.5", "0.25", "-0.25"]
    assert shown["Mean |diff|"] == ["1", "0.25", "0.75"]
    assert shown["Median |diff|"] == ["1", "0.25", "0.5"]
    assert shown["Within tolerance of −s·J"] == ["50.0%", "100.0%", "66.7%"]


def test_jacobian_sparsity_and_bad_tolerances():
    assert jacobian_sparsity(np.array([[0.5, 0.001], [0.02, -0.2]]), 0.01) == 0.75
    with pytest.raises(InputError, match=r"Tolerance atol must be a finite number >= 0, got -1\."):
        Tolerance(atol=-1)


def test_summary_layout_connections_are_integers_indexed_by_experiment():
    s = summarize(_table([0.5, 0.25], [0.0, 0.0], [True, False]))
    assert s.index.name == "experiment" and list(s.index) == ["important", "unimportant", "all"]
    assert s["connections"].dtype.kind == "i"
    assert list(s.columns) == [
        "connections",
        "mean_diff",
        "mean_abs_diff",
        "median_abs_diff",
        "p99_abs_diff",
        "within_tolerance",
    ]


def test_importance_ratio_at_its_edges():
    """Hand-made summaries: unimportant mean |diff| exactly 1 (the ratio is the important
    mean itself), exactly 0 (inf when important moved, NaN when nothing moved)."""
    assert importance_ratio(summarize(_table([0.5, -1.0], [0, 0], [True, False]))) == 0.5
    assert importance_ratio(summarize(_table([0.5, 0.0], [0, 0], [True, False]))) == math.inf
    assert math.isnan(importance_ratio(summarize(_table([0.0, 0.0], [0, 0], [True, False]))))
    assert math.isnan(importance_ratio(summarize(_table([0.5], [0], [True]))))
    assert math.isnan(importance_ratio(summarize(_table([0.5], [0], [False]))))


def test_tolerance_is_applied_in_float64_even_to_float32_columns():
    """The engine's columns are float32; the rule is evaluated in float64. |diff − predicted|
    = 0.10000000075 exceeds rtol · |predicted| = 0.1 exactly (Fractions), but not float32's
    0.1 (0.10000000149)."""
    diff = np.array([1.0 - 0.10000000075])
    predicted = np.array([1.0], dtype=np.float32)
    gap = abs(Fraction(float(diff[0])) - Fraction(float(predicted[0])))
    assert gap > Fraction(0.1) * 1 and gap < Fraction(float(np.float32(0.1)))
    assert not Tolerance(atol=0.0, rtol=0.1).within(diff, predicted)[0]
    table = _table(diff, predicted, [True])
    assert summarize(table, Tolerance(atol=0.0, rtol=0.1)).loc["all", "within_tolerance"] == 0.0


def test_jacobian_sparsity_of_nothing_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(jacobian_sparsity(np.array([]), 0.01))


def test_format_summary_rounds_to_four_digits_and_dashes_an_empty_experiment():
    table = _table([1 / 3, 2 / 3], [0.0, 0.0], [True, True])
    text = format_summary(summarize(table))
    _, *rows = text.splitlines()
    shown = {row.rsplit(maxsplit=3)[0].strip(): row.rsplit(maxsplit=3)[1:] for row in rows}
    assert shown["Connections"] == ["2", "0", "2"]
    assert shown["Mean |diff|"] == ["0.5", "—", "0.5"]
    assert shown["Median |diff|"] == ["0.5", "—", "0.5"]
    assert shown["Mean diff"] == ["0.5", "—", "0.5"]
    assert shown["Within tolerance of −s·J"] == ["0.0%", "—", "0.0%"]
    thirds = format_summary(summarize(_table([1 / 3], [0.0], [True])))
    assert "0.3333" in thirds and "0.33333" not in thirds
