"""Summary statistics of the two experiments: do unimportant connections really not move?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.errors import InputError
from jsae.table import is_important

SUMMARY_COLUMNS = (
    "connections",
    "mean_diff",
    "mean_abs_diff",
    "median_abs_diff",
    "p99_abs_diff",
    "within_tolerance",
)
SUMMARY_LABELS = {
    "connections": "Connections",
    "mean_diff": "Mean diff",
    "mean_abs_diff": "Mean |diff|",
    "median_abs_diff": "Median |diff|",
    "p99_abs_diff": "99th pct |diff|",
    "within_tolerance": "Within tolerance of −s·J",
}


@dataclass(frozen=True)
class Tolerance:
    """When a measured diff counts as matching the first-order prediction −s·J.

    A diff is within tolerance when |diff − predicted| <= atol + rtol · |predicted|
    (numpy's ``isclose`` rule).

    Args:
        atol: absolute tolerance, in output-feature activation units.
        rtol: relative tolerance, as a fraction of |predicted|.
    """

    atol: float = 0.01
    rtol: float = 0.1

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InputError(f"Tolerance {name} must be a finite number >= 0, got {value!r}.")

    def within(self, diff: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """Per connection: |diff − predicted| <= atol + rtol · |predicted| (in float64)."""
        diff = np.asarray(diff, dtype=np.float64)
        predicted = np.asarray(predicted, dtype=np.float64)
        return np.abs(diff - predicted) <= self.atol + self.rtol * np.abs(predicted)


def within_tolerance(table: pd.DataFrame, tolerance: Tolerance | None = None) -> np.ndarray:
    """Per connection: does the measured diff lie within tolerance of the prediction?"""
    return (tolerance or Tolerance()).within(table["diff"], table["predicted"])


def empty_summary() -> dict[str, float]:
    """The ``SUMMARY_COLUMNS`` of an experiment without connections: 0, then NaN throughout."""
    return dict.fromkeys(SUMMARY_COLUMNS, math.nan) | {"connections": 0}


def _describe(diff: np.ndarray, within: np.ndarray) -> dict[str, float]:
    if len(diff) == 0:
        return empty_summary()
    absdiff = np.abs(diff)
    return {
        "connections": len(diff),
        "mean_diff": float(diff.mean()),
        "mean_abs_diff": float(absdiff.mean()),
        "median_abs_diff": float(np.median(absdiff)),
        "p99_abs_diff": float(np.quantile(absdiff, 0.99)),
        "within_tolerance": float(within.mean()),
    }


def summarize(table: pd.DataFrame, tolerance: Tolerance | None = None) -> pd.DataFrame:
    """One row per experiment (important, unimportant, all) with the columns of
    ``SUMMARY_COLUMNS``. ``table`` must carry the ``important`` column of one ε split."""
    diff = table["diff"].to_numpy(dtype=np.float64)
    important = table["important"].to_numpy(dtype=bool)
    within = within_tolerance(table, tolerance)
    return summary_frame(
        _describe(diff[important], within[important]),
        _describe(diff[~important], within[~important]),
        _describe(diff, within),
    )


def summary_frame(
    important: dict[str, float], unimportant: dict[str, float], all: dict[str, float]
) -> pd.DataFrame:
    """The summary table from each experiment's ``SUMMARY_COLUMNS`` values: rows important,
    unimportant, all (index ``experiment``), ``connections`` as int. Every summary — one
    prompt's or a merged corpus's — is laid out by this function."""
    rows = {"important": important, "unimportant": unimportant, "all": all}
    summary = pd.DataFrame.from_dict(rows, orient="index")[list(SUMMARY_COLUMNS)]
    summary["connections"] = summary["connections"].astype(int)
    summary.index.name = "experiment"
    return summary


def importance_ratio(summary: pd.DataFrame) -> float:
    """Mean |diff| of important connections over that of unimportant ones (NaN if either is
    empty, inf if unimportant connections did not move at all)."""
    important = summary.loc["important", "mean_abs_diff"]
    unimportant = summary.loc["unimportant", "mean_abs_diff"]
    if math.isnan(important) or math.isnan(unimportant):
        return math.nan
    if unimportant == 0:
        return math.inf if important > 0 else math.nan
    return float(important / unimportant)


def jacobian_sparsity(jacobian: np.ndarray, eps: float) -> float:
    """Fraction of active Jacobian entries with |J| > ε."""
    jacobian = np.asarray(jacobian)
    return float(is_important(jacobian, eps).mean()) if jacobian.size else math.nan


def format_summary(summary: pd.DataFrame, digits: int = 4) -> str:
    """The summary as a plain-text table, experiments side by side (for the CLI)."""
    shown = summary.rename(columns=SUMMARY_LABELS).T
    shown.columns = [str(c).capitalize() for c in shown.columns]

    def fmt(value: float, row: str) -> str:
        if row == SUMMARY_LABELS["connections"]:
            return f"{int(value):,}"
        if row == SUMMARY_LABELS["within_tolerance"]:
            return "—" if math.isnan(value) else f"{value:.1%}"
        return "—" if math.isnan(value) else f"{value:.{digits}g}"

    formatted = pd.DataFrame(
        {col: [fmt(v, row) for row, v in shown[col].items()] for col in shown.columns},
        index=shown.index,
    )
    return formatted.to_string()
