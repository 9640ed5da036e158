"""Binning in numpy, so that charts get a few hundred rows however many connections a run
has: shared ranges, histograms per group on shared edges (counted by ``jsae.histogram``),
2-D density grids, log |J|."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from jsae.errors import InputError
from jsae.histogram import shared_counts


def symmetric_range(*arrays: np.ndarray) -> tuple[float, float]:
    """(−m, m) with m the largest |value| of all arrays (±1 when all are empty or zero)."""
    m = 0.0
    for values in arrays:
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            m = max(m, float(np.abs(finite).max()))
    m = m if m > 0 else 1.0
    return -m, m


def data_range(*arrays: np.ndarray) -> tuple[float, float]:
    """(min, max) over all arrays, padded when degenerate; (0, 1) when all are empty."""
    lo, hi = math.inf, -math.inf
    for values in arrays:
        values = np.asarray(values, dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if not math.isfinite(lo):
        return 0.0, 1.0
    if hi <= lo:
        pad = max(abs(lo) * 0.05, 1e-6)
        return lo - pad, hi + pad
    return lo, hi


def histogram_bins(
    groups: Mapping[str, np.ndarray],
    bins: int = 60,
    value_range: tuple[float, float] | None = None,
    group_name: str = "experiment",
) -> pd.DataFrame:
    """Histogram counts per group on one shared set of bin edges (``histogram.shared_counts``).

    Returns one row per non-empty bin: ``group_name``, ``bin_start``, ``bin_end``,
    ``count`` and ``share`` (count / the group's size). Empty bins are left out, so a
    log-scaled count axis never sees a zero. ``value_range`` defaults to the symmetric
    range of all values (``symmetric_range``).
    """
    lo, hi = value_range or symmetric_range(*groups.values())
    edges, counts = shared_counts(groups, (lo, hi), bins)
    frames = []
    for name, values in groups.items():
        total = max(len(values), 1)
        keep = counts[name] > 0
        frames.append(
            pd.DataFrame(
                {
                    group_name: name,
                    "bin_start": edges[:-1][keep],
                    "bin_end": edges[1:][keep],
                    "count": counts[name][keep],
                    "share": counts[name][keep] / total,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    out.attrs["range"] = (float(lo), float(hi))
    return out


def density_grid(
    x: np.ndarray,
    y: np.ndarray,
    bins: int = 80,
    value_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """A 2-D histogram of (x, y) in numpy: ``bins`` × ``bins`` cells, x edges spanning
    ``value_range`` (default: the shared range of x and y, a square grid) and y edges
    ``y_range`` (default: the same as x).

    Returns one row per non-empty cell: ``x_start``, ``x_end``, ``y_start``, ``y_end``,
    ``count``; the x range is in ``attrs["range"]``, the y range in ``attrs["y_range"]``.
    """
    if bins < 1:
        raise InputError(f"The number of bins must be at least 1, got {bins}.")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    lo, hi = value_range or data_range(x, y)
    y_lo, y_hi = y_range or (lo, hi)
    x_edges = np.linspace(lo, hi, bins + 1)
    y_edges = np.linspace(y_lo, y_hi, bins + 1)
    ok = np.isfinite(x) & np.isfinite(y)
    counts, _, _ = np.histogram2d(x[ok], y[ok], bins=[x_edges, y_edges])
    ix, iy = np.nonzero(counts)
    out = pd.DataFrame(
        {
            "x_start": x_edges[ix],
            "x_end": x_edges[ix + 1],
            "y_start": y_edges[iy],
            "y_end": y_edges[iy + 1],
            "count": counts[ix, iy].astype(np.int64),
        }
    )
    out.attrs["range"] = (float(lo), float(hi))
    out.attrs["y_range"] = (float(y_lo), float(y_hi))
    return out


def log_abs_jacobian(values: np.ndarray, floor: float = 1e-12) -> np.ndarray:
    """log10 |J|, with exact zeros mapped to log10(floor)."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    return np.log10(np.maximum(values, floor))
