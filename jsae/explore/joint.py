"""The joint ablation as the pages show it: the sets removed together, binned, and the
faithfulness curves with their scores.

The numbers are ``jsae.analysis``'s: the rows of ``set_frame`` (one per token, output
feature j and set, at ε) and a ``JointStatistics``' ``curves`` and score. Nothing here
recomputes one; it picks a value per row, bins it and labels it.

A set's *share of j's activation moved* is |diff| / out_act over the (token, j) with
out_act > 0, the share ``JointStatistics.sets`` averages (``mean_share``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from jsae.analysis import ORDERS, SETS, JointStatistics
from jsae.analysis.downstream import KEEP_ORDERS, DownstreamKL
from jsae.analysis.faithfulness import CURVE_COLUMNS
from jsae.errors import InputError
from jsae.explore.binning import histogram_bins
from jsae.explore.misses import format_number

SET_LABELS = {
    "unimportant": "unimportant: every input with |J| ≤ ε",
    "important": "important: every input with |J| > ε",
    "random": "random: as many random inputs as the unimportant set",
}
"""What each set of ``jsae.analysis.SETS`` removes, as a legend says it."""
JOINT_VALUES = {
    "abs_diff": "|diff| of output feature j",
    "share": "share of j's activation moved (|diff| / out_act)",
}
"""What the "removed together" histogram can bin, and its axis title."""
CURVE_VALUES = {
    "mean_abs_diff": "mean |diff| of j",
    "mean_share": "mean share of j's activation moved",
}
"""What the faithfulness curves can draw (``JointStatistics.curves`` columns), and its title."""
COMPARED_VALUES = {
    "relative_abs_diff": "mean |diff|, relative to all removed",
    **CURVE_VALUES,
}
"""What the pairs' comparison can draw (``curve_frame`` columns), and its title."""
ORDER_LABELS = {
    "jacobian": "by |J|, smallest first",
    "reverse": "by |J|, largest first",
    "oracle": "oracle: by single-connection |diff|",
    "random": "random",
}
"""Each removal order of ``jsae.analysis.ORDERS``, as a legend says it."""
COMPARED_ORDERS = ("jacobian", "random", "oracle")
"""The orders the pairs' comparison draws: |J| and the two ends of the score's scale."""


def set_values(frame: pd.DataFrame, value: str = "abs_diff") -> dict[str, np.ndarray]:
    """Each set's values (``SETS`` order) from ``set_frame`` rows: |diff|, or |diff| / out_act
    for the rows with out_act > 0 (``value`` ``"share"``)."""
    if value not in JOINT_VALUES:
        raise InputError(f"Unknown value {value!r}: use one of {', '.join(JOINT_VALUES)}.")
    groups = {}
    for name in SETS:
        rows = frame[frame["set"] == name]
        abs_diff = np.abs(rows["diff"].to_numpy(dtype=np.float64))
        if value == "share":
            act = rows["out_act"].to_numpy(dtype=np.float64)
            abs_diff = abs_diff[act > 0] / act[act > 0]
        groups[name] = abs_diff
    return groups


def joint_bins(frame: pd.DataFrame, value: str = "abs_diff", bins: int = 60) -> pd.DataFrame:
    """``histogram_bins`` of ``set_values`` (group column ``set``) on one range from 0 to the
    largest value of any set (0 to 1 when there is none)."""
    groups = set_values(frame, value)
    finite = [v[np.isfinite(v)] for v in groups.values()]
    top = max((float(v.max()) for v in finite if v.size), default=0.0)
    return histogram_bins(groups, bins=bins, value_range=(0.0, top or 1.0), group_name="set")


def score_label(joint: JointStatistics) -> str:
    """The faithfulness score and its interval, e.g. ``score 0.42 [0.31, 0.55]`` (no
    brackets without an interval)."""
    lo, hi = joint.score_ci
    shown = f"score {format_number(joint.score, 3)}"
    if np.isfinite(lo) and np.isfinite(hi):
        shown += f" [{format_number(lo, 3)}, {format_number(hi, 3)}]"
    return shown


def curve_frame(joints: Mapping[str, JointStatistics], orders=ORDERS) -> pd.DataFrame:
    """The pairs' curves in one frame: ``kind``, ``JointStatistics.curves``' columns and
    ``relative_abs_diff``, the ``orders`` given, rows in (kind, order, m) order.

    ``relative_abs_diff`` is mean |diff| over its value with every input removed (m = k_in,
    the same row in every order), so that pairs whose output features move by different
    amounts share an axis; the score, a ratio of areas, does not change."""
    frames = []
    for kind, joint in joints.items():
        curves = joint.curves
        full = curves.loc[curves["m"] == joint.k_in, "mean_abs_diff"].iloc[0]
        relative = curves["mean_abs_diff"] / full if full > 0 else np.nan
        curves = curves.assign(kind=kind, relative_abs_diff=relative)
        frames.append(curves[curves["order"].isin(list(orders))])
    columns = ["kind", *CURVE_COLUMNS, "relative_abs_diff"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def score_frame(joints: Mapping[str, JointStatistics]) -> pd.DataFrame:
    """One row per pair kind: kind, score, ci_low, ci_high, ``label`` (``score_label``) and
    ``pair`` (the kind and its label, as a legend names it)."""
    rows = [
        (kind, joint.score, *joint.score_ci, label, f"{kind}: {label}")
        for kind, joint in joints.items()
        for label in [score_label(joint)]
    ]
    return pd.DataFrame(rows, columns=["kind", "score", "ci_low", "ci_high", "label", "pair"])


KEEP_LABELS = {
    "jacobian": "keeps its largest |J|",
    "oracle": "oracle: keeps its largest single-connection |diff|",
    "random": "keeps random inputs",
}
"""Each keep order of ``jsae.analysis.downstream.KEEP_ORDERS``, as a legend says it."""
KL_COLUMNS = ("kind", "pair", "order", "order_label", "m_kept", "kept_connections", "kl_mean")
"""Columns of ``downstream_frame``: one row per (pair kind, keep order, kept budget)."""


def downstream_frame(
    results: Mapping[str, DownstreamKL], labels: Mapping[str, str]
) -> pd.DataFrame:
    """The pairs' mean next-token KL against kept connections per token, in one frame
    (``KL_COLUMNS``; ``pair`` is the label a legend shows)."""
    frames = [
        kl.table.assign(
            kind=kind,
            pair=labels.get(kind, kind),
            order_label=lambda t: t["order"].map(KEEP_LABELS),
        )
        for kind, kl in results.items()
    ]
    if not frames:
        return pd.DataFrame(columns=list(KL_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(KL_COLUMNS)]


def downstream_table(
    results: Mapping[str, DownstreamKL], labels: Mapping[str, str]
) -> pd.DataFrame:
    """One row per (pair, keep order): the KL areas and N× fewer connections than random."""
    rows = []
    for kind, kl in results.items():
        area, relative, fewer = kl.area, kl.relative_area, kl.fewer_than_random
        for order in KEEP_ORDERS:
            rows.append(
                (labels.get(kind, kind), KEEP_LABELS[order], area[order], relative[order],
                 fewer.get(order, np.nan))
            )  # fmt: skip
    return pd.DataFrame(
        rows, columns=["pair", "keep by", "area", "relative area", "fewer than random"]
    )
