"""The analysis as the results pages show it: the verdict box, the statistics table and the
mass-capture curves.

The numbers are ``jsae.analysis``'s (``analyse`` → ``Analysis``); nothing here recomputes
one. The verdict's level picks the box (``VERDICT_STYLES``); a perverse verdict, a sparse
Jacobian without sparse computation, is always a warning and says so first; a dense Jacobian
says so first in its level's box. The statistics
table is ``Analysis.summary()`` with each value printed (``format_value``) and each interval
written "lo–hi". The mass-capture curve
of a table is the share of Σ|diff| carried by its top fraction x of connections ranked by
|J| and, for reference, by |diff| itself (the oracle); a random ranking captures x.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from jsae.analysis import Verdict
from jsae.analysis.verdict import DENSE_LEAD, PERVERSE_LEAD
from jsae.explore.misses import format_number

VERDICT_STYLES = {"yes": "success", "partly": "info", "no": "warning", "undetermined": "info"}
"""The box a verdict's level is shown in (``st.success``, ``st.info``, ``st.warning``)."""
"""The bold lead of a perverse verdict's box."""
STATISTICS_COLUMNS = ("statistic", "value", "shown", "interval", "description")
"""The columns of ``statistics_table`` (``value`` the number, ``shown`` it printed)."""
BY_JACOBIAN = "by |J|"
ORACLE = "oracle: by |diff|"
CAPTURE_RANKINGS = (BY_JACOBIAN, ORACLE)
"""The rankings of ``capture_frame``, in legend order (the curve's columns ``by_jacobian``
and ``oracle``)."""


def verdict_box(found: Verdict) -> tuple[str, str]:
    """The box to show ``found`` in (``"success"``, ``"info"`` or ``"warning"``) and its
    markdown: a perverse verdict is a warning led by ``PERVERSE_LEAD`` in bold; a dense
    Jacobian's verdict is led by ``DENSE_LEAD`` in bold, in its level's box."""
    if found.perverse:
        return "warning", f"**{PERVERSE_LEAD}.** {found.sentence}"
    if found.dense:
        return VERDICT_STYLES[found.level], f"**{DENSE_LEAD}.** {found.sentence}"
    return VERDICT_STYLES[found.level], found.sentence


def format_interval(low: float, high: float) -> str:
    """An interval as "lo–hi" (3 significant digits, ∞ for inf), empty when either end is
    NaN."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return ""
    return f"{format_number(low, 3)}–{format_number(high, 3)}"


def format_value(value: float) -> str:
    """A statistic as the table prints it: a whole number of at least 1 with thousands
    separators (a count), anything else with 4 significant digits (``format_number``)."""
    if value is not None and math.isfinite(value) and abs(value) >= 1 and value == int(value):
        return f"{value:,.0f}"
    return format_number(value, 4)


def statistics_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``EffectStatistics.summary()``, ``PairHealth.summary()`` or ``Analysis.summary()``
    for the page: statistic, value, shown (the value printed), interval ("lo–hi", empty
    without one) and description."""
    if "ci_low" in summary.columns:
        intervals = [
            format_interval(lo, hi)
            for lo, hi in zip(summary["ci_low"], summary["ci_high"], strict=True)
        ]
    else:
        intervals = [""] * len(summary)
    shown = [format_value(float(value)) for value in summary["value"]]
    out = summary.assign(shown=shown, interval=intervals)
    return out[list(STATISTICS_COLUMNS)].reset_index(drop=True)


def capture_frame(curves: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mass-capture curves (``EffectStatistics.capture_curve``: fraction, by_jacobian,
    oracle) by pair kind in long form: kind, fraction, ranking (``CAPTURE_RANKINGS``),
    share; points without movement (NaN) are left out."""
    frames = []
    for kind, curve in curves.items():
        for ranking, column in zip(CAPTURE_RANKINGS, ("by_jacobian", "oracle"), strict=True):
            frames.append(
                pd.DataFrame(
                    {
                        "kind": kind,
                        "fraction": curve["fraction"].to_numpy(dtype=np.float64),
                        "ranking": ranking,
                        "share": curve[column].to_numpy(dtype=np.float64),
                    }
                )
            )
    columns = ["kind", "fraction", "ranking", "share"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    return out[np.isfinite(out["share"].to_numpy())].reset_index(drop=True)
