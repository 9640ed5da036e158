"""The unimportant connections that moved most, and how the pages print a statistic.

(The verdict on causal sparsity is ``jsae.analysis.verdict``'s; ``jsae.explore.statistics``
shows it.)"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from jsae.table import COLUMNS


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
