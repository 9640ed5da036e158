"""Histograms of groups of values on one shared set of equal-width bins, counted in numpy.

Every histogram of diffs per experiment goes through ``shared_counts``: the explorer's
(``jsae.explore.histogram_bins``, drawn by ``jsae.charts``) and the W&B run's table
(``jsae.wandb_log.histogram``). The rule lives here once: ``bins`` equal-width bins over one
range shared by all groups, only finite values counted, each bin half-open [left, right) but
the last, which includes its right edge (numpy's). Which range, and which bins a frame keeps,
is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from jsae.errors import InputError


def experiment_diffs(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The diffs of the important and the unimportant connections (needs ``important``)."""
    diff = table["diff"].to_numpy(dtype=np.float64)
    important = table["important"].to_numpy(dtype=bool)
    return {"important": diff[important], "unimportant": diff[~important]}


def shared_counts(
    groups: Mapping[str, np.ndarray], value_range: tuple[float, float], bins: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each group's counts on ``bins`` equal-width bins spanning ``value_range``.

    Returns the ``bins + 1`` edges and, per group, its ``bins`` counts (int64) of finite
    values; values outside the range are not counted.
    """
    if bins < 1:
        raise InputError(f"The number of bins must be at least 1, got {bins}.")
    lo, hi = value_range
    edges = np.linspace(lo, hi, bins + 1)
    counts = {}
    for name, values in groups.items():
        values = np.asarray(values, dtype=np.float64)
        counts[name], _ = np.histogram(values[np.isfinite(values)], bins=edges)
        counts[name] = counts[name].astype(np.int64)
    return edges, counts
