"""Drilling into a chart: the connections behind a selected bar of the diff histogram.

The histogram (``diff_bins``) bins each experiment's diffs on equal-width edges spanning the
data's own range (``binning.data_range``, not a symmetric one, so no half of the chart is
empty). A bin [lo, hi) holds the connections of its experiment with lo ≤ diff < hi, the
last bin also diff = hi (numpy's ``histogram`` rule, which counted the bar).

A cell of the Jacobian-vs-effect density (``effect.effect_grid``) holds the connections with
predicted in its x bin and diff in its y bin, by the same rule on each axis (numpy's
``histogram2d``); the grid counts the connections that left the top k apart from the others,
so a cell drawn for either holds only its own (a cell read without that flag, both).

A region brushed on the Jacobian-vs-effect scatter is a closed box: it holds the connections
with x_lo ≤ predicted ≤ x_hi and y_lo ≤ diff ≤ y_hi, both bounds inclusive on both axes
(as Vega-Lite's interval test), exited or not.

The exit band is the range of diffs of connections whose output feature left the top k:
there the gate undoes the whole activation, diff = −out_act.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.explore.binning import data_range, histogram_bins
from jsae.histogram import experiment_diffs
from jsae.table import exited_flags

DRILL_COLUMNS = (
    "position",
    "token",
    "in_feature",
    "out_feature",
    "jacobian",
    "predicted",
    "diff",
    "exited",
    "important",
)
"""What the connection table under a chart shows of each connection."""
DRILL_MAX = 500
"""Rows the table shows at most (largest |diff| first); the caption gives the full count."""


@dataclass(frozen=True)
class PickedBin:
    """A histogram bar: its experiment and edges, and whether it is the last bin (closed)."""

    experiment: str
    lo: float
    hi: float
    last: bool = False


@dataclass(frozen=True)
class PickedCell:
    """A density cell: its predicted (x) and diff (y) edges, whether each is its axis's
    last (closed) bin, and whose connections it counts (``exited``: True for those whose
    output feature left the top k, False for the others, None for both)."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    x_last: bool = False
    y_last: bool = False
    exited: bool | None = None


@dataclass(frozen=True)
class PickedRegion:
    """A brushed box on the scatter: predicted (x) in [x_lo, x_hi], diff (y) in [y_lo, y_hi],
    every bound inclusive."""

    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float


def in_bin(values: np.ndarray, lo: float, hi: float, last: bool) -> np.ndarray:
    """Which values lie in the bin [lo, hi) ([lo, hi] for an axis's last bin)."""
    values = np.asarray(values, dtype=np.float64)
    return (values >= lo) & ((values <= hi) if last else (values < hi))


def largest_first(table: pd.DataFrame, keep: np.ndarray, limit: int) -> tuple[pd.DataFrame, int]:
    """The kept rows' ``DRILL_COLUMNS``, largest |diff| first, at most ``limit``, and how
    many were kept."""
    rows = table.loc[keep, [c for c in DRILL_COLUMNS if c in table.columns]]
    order = np.argsort(-np.abs(rows["diff"].to_numpy(dtype=np.float64)), kind="stable")
    return rows.iloc[order[:limit]].reset_index(drop=True), int(keep.sum())


def exit_band(table: pd.DataFrame) -> tuple[float, float] | None:
    """(min, max) of the diffs of the connections that exited, or None when none did."""
    diff = table["diff"].to_numpy(dtype=np.float64)[table["exited"].to_numpy(dtype=bool)]
    diff = diff[np.isfinite(diff)]
    if not diff.size:
        return None
    return float(diff.min()), float(diff.max())


def diff_bins(table: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Both experiments' diff histograms on edges spanning the data's range, with that range
    in ``attrs["range"]`` and the exit band (``exit_band``) in ``attrs["exit_band"]``."""
    diffs = experiment_diffs(table)
    out = histogram_bins(diffs, bins=bins, value_range=data_range(*diffs.values()))
    out.attrs["exit_band"] = exit_band(table)
    return out


def picked_bin(
    points: Sequence[Mapping] | None, value_range: tuple[float, float]
) -> PickedBin | None:
    """The bar a chart's point selection holds (its first point's ``experiment``,
    ``bin_start`` and ``bin_end``), or None when nothing usable is selected."""
    if not points:
        return None
    point = points[0]
    try:
        lo, hi = float(point["bin_start"]), float(point["bin_end"])
        experiment = str(point["experiment"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        return None
    return PickedBin(experiment, lo, hi, last=bool(np.isclose(hi, value_range[1])))


def bin_connections(
    table: pd.DataFrame, picked: PickedBin, limit: int = DRILL_MAX
) -> tuple[pd.DataFrame, int]:
    """The connections in the bar ``picked`` (``DRILL_COLUMNS``, largest |diff| first, at
    most ``limit`` rows) and how many there are in all."""
    group = table["important"].to_numpy(dtype=bool)
    if picked.experiment == "unimportant":
        group = ~group
    keep = group & in_bin(table["diff"].to_numpy(), picked.lo, picked.hi, picked.last)
    return largest_first(table, keep, limit)


def bin_text(picked: PickedBin) -> str:
    """What the bar holds, as the table's caption says it (the last bin's closed edge as
    "]")."""
    end = "]" if picked.last else ")"
    return f"of the {picked.experiment} group with diff in [{picked.lo:.4g}, {picked.hi:.4g}{end}"


def picked_cell(
    points: Sequence[Mapping] | None,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
) -> PickedCell | None:
    """The density cell a chart's point selection holds (its first point's ``x_start``,
    ``x_end``, ``y_start``, ``y_end``), or None when nothing usable is selected."""
    if not points:
        return None
    try:
        edges = [float(points[0][k]) for k in ("x_start", "x_end", "y_start", "y_end")]
    except (KeyError, TypeError, ValueError):
        return None
    x_lo, x_hi, y_lo, y_hi = edges
    if not (np.all(np.isfinite(edges)) and x_lo < x_hi and y_lo < y_hi):
        return None
    exited = points[0].get("exited")
    if exited is not None and exited not in (True, False):
        return None
    return PickedCell(
        x_lo,
        x_hi,
        y_lo,
        y_hi,
        x_last=bool(np.isclose(x_hi, x_range[1])),
        y_last=bool(np.isclose(y_hi, y_range[1])),
        exited=None if exited is None else bool(exited),
    )


def cell_connections(
    table: pd.DataFrame, cell: PickedCell, limit: int = DRILL_MAX
) -> tuple[pd.DataFrame, int]:
    """The connections in the density cell ``cell`` (only those with ``exited`` equal to the
    cell's when it names one, a table without the column counting as none exited;
    ``DRILL_COLUMNS``, largest |diff| first, at most ``limit`` rows) and how many there are
    in all."""
    keep = in_bin(table["predicted"].to_numpy(), cell.x_lo, cell.x_hi, cell.x_last) & in_bin(
        table["diff"].to_numpy(), cell.y_lo, cell.y_hi, cell.y_last
    )
    if cell.exited is not None:
        keep &= exited_flags(table) == cell.exited
    return largest_first(table, keep, limit)


def cell_text(cell: PickedCell) -> str:
    """What the cell holds, as the table's caption says it (a closed edge as "]")."""
    x_end, y_end = ("]" if last else ")" for last in (cell.x_last, cell.y_last))
    which = {None: "", True: " that left the top k", False: " that stayed in the top k"}
    return (
        f"{which[cell.exited]} with predicted in [{cell.x_lo:.4g}, {cell.x_hi:.4g}{x_end} "
        f"and diff in [{cell.y_lo:.4g}, {cell.y_hi:.4g}{y_end}"
    ).lstrip()


def _extent(raw: object) -> tuple[float, float] | None:
    """A brush's [a, b] on one field as (min, max) (Vega-Lite writes the y extent top
    first, so either order), or None when it is not two finite numbers."""
    try:
        a, b = (float(v) for v in raw)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(a) and np.isfinite(b)):
        return None
    return min(a, b), max(a, b)


def picked_region(selection: Mapping | None) -> PickedRegion | None:
    """The box a chart's interval selection holds (``{"predicted": [a, b], "diff": [c, d]}``,
    each extent in either order), or None when it lacks either field."""
    if not selection:
        return None
    x, y = (_extent(selection.get(field)) for field in ("predicted", "diff"))
    if x is None or y is None:
        return None
    return PickedRegion(x[0], x[1], y[0], y[1])


def region_connections(
    table: pd.DataFrame, region: PickedRegion, limit: int = DRILL_MAX
) -> tuple[pd.DataFrame, int]:
    """The connections inside ``region``, bounds included (exited or not;
    ``DRILL_COLUMNS``, largest |diff| first, at most ``limit`` rows), and how many there
    are in all."""
    x = table["predicted"].to_numpy(dtype=np.float64)
    y = table["diff"].to_numpy(dtype=np.float64)
    keep = (x >= region.x_lo) & (x <= region.x_hi) & (y >= region.y_lo) & (y <= region.y_hi)
    return largest_first(table, keep, limit)


def region_text(region: PickedRegion) -> str:
    """What the region holds, as the table's caption says it."""
    return (
        f"with predicted in [{region.x_lo:.4g}, {region.x_hi:.4g}] and diff in "
        f"[{region.y_lo:.4g}, {region.y_hi:.4g}]"
    )
