"""What the results pages conclude: the verdict on causal sparsity, the unimportant
connections that moved most, and how a statistic is printed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.stats import importance_ratio
from jsae.table import COLUMNS


@dataclass(frozen=True)
class Verdict:
    """The one-line answer: do unimportant connections really not move?

    Args:
        level: ``"yes"``, ``"partly"``, ``"no"`` or ``"undetermined"``.
        ratio: mean |diff| of important over unimportant connections.
        sentence: the line to show.
    """

    level: str
    ratio: float
    sentence: str


def verdict(summary: pd.DataFrame, eps: float, strong: float = 10.0, weak: float = 2.0) -> Verdict:
    """Judge a ``stats.summarize`` table: ratio ≥ ``strong`` is a yes, ≥ ``weak`` partly."""
    ratio = importance_ratio(summary)
    n_imp = int(summary.loc["important", "connections"])
    n_unimp = int(summary.loc["unimportant", "connections"])
    if n_imp == 0:
        return Verdict(
            "undetermined",
            ratio,
            f"No connection has |J| > ε = {eps:g}, so there is nothing to compare: lower ε.",
        )
    if n_unimp == 0:
        return Verdict(
            "undetermined",
            ratio,
            f"Every connection has |J| > ε = {eps:g}, so there is nothing to compare: raise ε.",
        )
    imp = summary.loc["important", "mean_abs_diff"]
    unimp = summary.loc["unimportant", "mean_abs_diff"]
    share = n_unimp / (n_imp + n_unimp)
    detail = (
        f"mean |diff| {unimp:.3g} for the {share:.0%} of connections with |J| ≤ ε = {eps:g} "
        f"vs {imp:.3g} for those with |J| > ε"
    )
    if math.isinf(ratio):
        return Verdict(
            "yes", ratio, f"Yes: unimportant connections did not move at all ({detail})."
        )
    if ratio >= strong:
        return Verdict(
            "yes",
            ratio,
            f"Yes: unimportant connections barely move, {ratio:,.0f}× less than important "
            f"ones ({detail}).",
        )
    if ratio >= weak:
        return Verdict(
            "partly",
            ratio,
            f"Partly: unimportant connections move {ratio:.1f}× less than important ones "
            f"({detail}).",
        )
    return Verdict(
        "no",
        ratio,
        f"No: unimportant connections move about as much as important ones, ratio "
        f"{ratio:.2g} ({detail}).",
    )


def format_number(value: float, digits: int = 4) -> str:
    """How the app prints a statistic: ``—`` for NaN, ``∞`` for inf, else ``digits``
    significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"


def format_share(value: float | None, digits: int = 1) -> str:
    """A share as a percentage with ``digits`` decimals, ``—`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}%}"


# The engine's columns, with ``miss`` in place of ``important`` (misses are all unimportant).
MISS_COLUMNS = (*(c for c in COLUMNS if c != "important"), "miss")


def largest_misses(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The unimportant connections (|J| ≤ ε) that moved most, by |diff|, with
    ``miss`` = |diff − predicted|. Needs the ``important`` column."""
    unimportant = table[~table["important"].to_numpy(dtype=bool)]
    if unimportant.empty:
        return pd.DataFrame(columns=list(MISS_COLUMNS))
    absdiff = np.abs(unimportant["diff"].to_numpy(dtype=np.float64))
    n = min(n, len(absdiff))
    top = np.argpartition(-absdiff, n - 1)[:n] if n < len(absdiff) else np.arange(len(absdiff))
    top = top[np.argsort(-absdiff[top], kind="stable")]
    out = unimportant.iloc[top].copy()
    out["miss"] = np.abs(out["diff"].to_numpy() - out["predicted"].to_numpy())
    out["token"] = out["token"].astype(str)
    return out[list(MISS_COLUMNS)].reset_index(drop=True)
