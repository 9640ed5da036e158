"""How well |J| predicts what moves, without choosing ε, and the split's numbers at one ε.

Over the per-connection table (``jsae.table.COLUMNS``; the exit statistics also read the
``exited`` column and are NaN on a table without it), with m = |diff| the movement of a
connection and "moved" meaning m > τ:

* ``auc``: ROC AUC of |J| as a score for moved (P(|J| of a moved connection > |J| of one
  that did not), ties ½); 0.5 is chance, 1 a perfect ranking.
* ``spearman``: Spearman's ρ of |J| and m.
* ``mass_capture``: the share Σ_top m / Σ m carried by the top fraction x of connections
  ranked by |J| (``by_jacobian``) and by m itself (``oracle``, the best any ranking can do).
  Ties in |J| are broken at random in expectation (the curve is linear across a run of equal
  |J|), and x·n need not be a whole number (linear between whole numbers of connections).
* on the line: a connection is on the line when its diff is within tolerance of the linear
  prediction −s·J (``jsae.stats.Tolerance.within``), counted (``on_line_share_count``) or
  weighted by m (``on_line_share_mass``).
* exits: ``p_exit`` the share of connections whose output feature left the top k,
  ``exit_mass_share`` their share of Σ m, ``exit_share_unimportant`` the same among the
  unimportant connections (|J| ≤ ε).
* ``ratio``: mean m of important over unimportant connections (``jsae.stats.importance_ratio``
  semantics: NaN if either side is empty, inf if the unimportant ones did not move at all);
  ``ratio_without_exits``: the same with exited connections left out.
* ``unimportant_moved``: among |J| ≤ ε, the share that moved, with a one-sided
  Clopper–Pearson upper bound at ``CONFIDENCE`` (k of n moved: the bound is the
  CONFIDENCE quantile of Beta(k + 1, n − k), 1 when k = n).

``jsae.analysis.effect.effect_statistics`` gathers them into one ``EffectStatistics``, with
percentile bootstrap intervals over tokens for the headline numbers
(``jsae.analysis.bootstrap``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, spearmanr
from sklearn.metrics import roc_auc_score

from jsae.errors import InputError
from jsae.stats import Tolerance
from jsae.table import check_eps, is_important

DEFAULT_TAU = 0.1
"""A connection has moved when |diff| > τ (output-feature activation units)."""
N_BOOTSTRAP = 200
"""Bootstrap replicates (token resamples) behind each interval; 0 skips the intervals."""
CONFIDENCE = 0.95
"""Coverage of the bootstrap intervals and of the one-sided Clopper–Pearson bound."""
BOOTSTRAP_SEED = 0
"""Seed of the token resampling, so intervals are reproducible."""
CAPTURE_FRACTION = 0.2
"""The top fraction of connections (by |J|) whose share of the movement is the headline."""
CAPTURE_POINTS = tuple(float(x) for x in np.round(np.linspace(0, 1, 21), 2))
"""Fractions at which ``mass_capture`` draws its curve."""


TOKEN_KEYS = ("document", "window", "prompt", "position")
"""The columns that name a token: ``position`` in one prompt's table; a batch's rows also
carry their ``prompt`` (``jsae.table.PROMPT_COLUMN``), a corpus shard's their ``document``
and ``window``."""


def token_ids(table: pd.DataFrame) -> np.ndarray:
    """Each connection's token as 0 .. n_tokens − 1, numbered in ascending order of the
    ``TOKEN_KEYS`` the table has."""
    keys = [key for key in TOKEN_KEYS if key in table.columns]
    if not keys:
        raise InputError("The connection table has no position column to tell its tokens apart.")
    if keys == ["position"]:
        return np.unique(table["position"].to_numpy(), return_inverse=True)[1].reshape(-1)
    return table.groupby(keys, sort=True, observed=True).ngroup().to_numpy()


def abs_diff(table: pd.DataFrame) -> np.ndarray:
    """|diff| per connection, float64."""
    return np.abs(table["diff"].to_numpy(dtype=np.float64))


def abs_jacobian(table: pd.DataFrame) -> np.ndarray:
    """|J| per connection, float64 (for ranking; the ε rule reads the column as stored)."""
    return np.abs(table["jacobian"].to_numpy(dtype=np.float64))


def important_flags(table: pd.DataFrame, eps: float) -> np.ndarray:
    """|J| > ε per connection, by ``jsae.table.is_important`` on the column as stored (so a
    float32 table splits exactly as ``jsae.table.split`` splits it)."""
    return np.asarray(is_important(table["jacobian"].to_numpy(), check_eps(eps)), dtype=bool)


def exited_flags(table: pd.DataFrame) -> np.ndarray | None:
    """The ``exited`` column as booleans, None when the table has no such column."""
    return table["exited"].to_numpy(dtype=bool) if "exited" in table.columns else None


def _share(part: float, whole: float) -> float:
    return float(part / whole) if whole > 0 else math.nan


def moved(table: pd.DataFrame, tau: float = DEFAULT_TAU) -> np.ndarray:
    """Per connection: |diff| > τ."""
    return abs_diff(table) > check_tau(tau)


def ratio_of_means(important: Any, unimportant: Any) -> Any:
    """Mean |diff| important / unimportant, elementwise, by ``jsae.stats.importance_ratio``'s
    rule: NaN if either mean is NaN (an empty side), inf if only the unimportant mean is 0,
    NaN if both are 0. A float for scalars, an array for arrays."""
    imp = np.asarray(important, dtype=np.float64)
    unimp = np.asarray(unimportant, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = imp / unimp
    out = np.where(unimp == 0, np.where(imp > 0, np.inf, np.nan), out)
    out = np.where(np.isnan(imp) | np.isnan(unimp), np.nan, out)
    return float(out) if out.ndim == 0 else out


def ratio_of_sums(imp_sum: Any, imp_n: Any, unimp_sum: Any, unimp_n: Any) -> Any:
    """``ratio_of_means`` from each side's Σ |diff| and count (an empty side's mean is NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        imp = np.where(np.asarray(imp_n) > 0, np.asarray(imp_sum) / np.asarray(imp_n), np.nan)
        unimp = np.where(
            np.asarray(unimp_n) > 0, np.asarray(unimp_sum) / np.asarray(unimp_n), np.nan
        )
    return ratio_of_means(imp, unimp)


def auc(table: pd.DataFrame, tau: float = DEFAULT_TAU) -> float:
    """ROC AUC of |J| as a score for |diff| > τ; NaN when only one class is present."""
    label = moved(table, tau)
    if label.all() or not label.any():
        return math.nan
    return float(roc_auc_score(label, abs_jacobian(table)))


def spearman(table: pd.DataFrame) -> float:
    """Spearman's ρ of |J| and |diff|; NaN with fewer than two connections or a constant one."""
    abs_j, abs_d = abs_jacobian(table), abs_diff(table)
    if len(abs_j) < 2 or np.ptp(abs_j) == 0 or np.ptp(abs_d) == 0:
        return math.nan
    return float(spearmanr(abs_j, abs_d).statistic)


def _capture(score: np.ndarray, mass: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Share of Σ mass carried by the top ``fractions`` of rows by score (ties and
    fractional counts linear, see the module docstring)."""
    n, total = len(score), float(mass.sum())
    if n == 0 or total <= 0:
        return np.full(len(fractions), math.nan)
    order = np.argsort(-score, kind="stable")
    ordered = score[order]
    cumulative = np.concatenate([[0.0], np.cumsum(mass[order])])
    knots = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1], [True]]))
    return np.interp(fractions * n, knots, cumulative[knots]) / total


def mass_capture(table: pd.DataFrame, points: Any = CAPTURE_POINTS) -> pd.DataFrame:
    """Columns ``fraction`` (top x of connections), ``by_jacobian`` (share of Σ |diff| on the
    top x by |J|) and ``oracle`` (on the top x by |diff|)."""
    fractions = np.asarray(points, dtype=np.float64)
    if np.any((fractions < 0) | (fractions > 1)):
        raise InputError(f"Capture fractions must lie in [0, 1], got {list(points)}.")
    abs_d = abs_diff(table)
    return pd.DataFrame(
        {
            "fraction": fractions,
            "by_jacobian": _capture(abs_jacobian(table), abs_d, fractions),
            "oracle": _capture(abs_d, abs_d, fractions),
        }
    )


def capture_at(table: pd.DataFrame, fraction: float = CAPTURE_FRACTION) -> float:
    """Share of Σ |diff| carried by the top ``fraction`` of connections by |J|."""
    return float(mass_capture(table, [fraction])["by_jacobian"].iloc[0])


def _on_line(table: pd.DataFrame, tolerance: Tolerance | None) -> np.ndarray:
    return (tolerance or Tolerance()).within(table["diff"], table["predicted"])


def on_line_share_count(table: pd.DataFrame, tolerance: Tolerance | None = None) -> float:
    """Share of connections whose diff is within tolerance of −s·J (NaN if empty)."""
    within = _on_line(table, tolerance)
    return float(within.mean()) if len(within) else math.nan


def on_line_share_mass(table: pd.DataFrame, tolerance: Tolerance | None = None) -> float:
    """Share of Σ |diff| carried by connections within tolerance of −s·J."""
    abs_d = abs_diff(table)
    return _share(abs_d[_on_line(table, tolerance)].sum(), abs_d.sum())


def p_exit(table: pd.DataFrame) -> float:
    """Share of connections whose output feature left the top k (NaN without ``exited``)."""
    exited = exited_flags(table)
    return float(exited.mean()) if exited is not None and len(exited) else math.nan


def exit_mass_share(table: pd.DataFrame) -> float:
    """Share of Σ |diff| on exited connections (NaN without ``exited`` or movement)."""
    exited = exited_flags(table)
    if exited is None:
        return math.nan
    abs_d = abs_diff(table)
    return _share(abs_d[exited].sum(), abs_d.sum())


def exit_share_unimportant(table: pd.DataFrame, eps: float) -> float:
    """Share of the unimportant connections' Σ |diff| (|J| ≤ ε) on exited ones."""
    unimportant = ~important_flags(table, eps)
    return exit_mass_share(table[unimportant])


def ratio(table: pd.DataFrame, eps: float) -> float:
    """Mean |diff| of important (|J| > ε) over unimportant connections."""
    important, abs_d = important_flags(table, eps), abs_diff(table)
    return ratio_of_sums(
        abs_d[important].sum(), important.sum(), abs_d[~important].sum(), (~important).sum()
    )


def ratio_without_exits(table: pd.DataFrame, eps: float) -> float:
    """``ratio`` over the connections that did not exit (NaN without ``exited``)."""
    exited = exited_flags(table)
    return math.nan if exited is None else ratio(table[~exited], eps)


@dataclass(frozen=True)
class UnimportantMoved:
    """How many unimportant connections (|J| ≤ ε) moved (|diff| > τ), with an upper bound.

    Args:
        moved: how many moved.
        connections: how many unimportant connections there are.
        share: moved / connections (NaN when there are none).
        upper: one-sided Clopper–Pearson upper bound on the share at ``confidence``.
        confidence: the bound's confidence.
    """

    moved: int
    connections: int
    share: float
    upper: float
    confidence: float


def clopper_pearson_upper(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided exact (Clopper–Pearson) upper bound on a proportion, k of n; NaN for n = 0."""
    if n == 0:
        return math.nan
    ci = binomtest(int(k), int(n), alternative="less").proportion_ci(
        confidence_level=check_confidence(confidence), method="exact"
    )
    return float(ci.high)


def unimportant_moved(
    table: pd.DataFrame, eps: float, tau: float = DEFAULT_TAU, confidence: float = CONFIDENCE
) -> UnimportantMoved:
    """The audited bound: among |J| ≤ ε, the share with |diff| > τ and its upper bound."""
    unimportant = ~important_flags(table, eps)
    k, n = int(moved(table, tau)[unimportant].sum()), int(unimportant.sum())
    share = k / n if n else math.nan
    return UnimportantMoved(k, n, share, clopper_pearson_upper(k, n, confidence), confidence)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"{what} must be a number, got {value!r}.")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None


def check_tau(tau: object) -> float:
    """τ must be a finite number >= 0."""
    value = _number(tau, "τ")
    if not 0 <= value < math.inf:
        raise InputError(f"τ must be a finite number >= 0, got {tau!r}.")
    return value


def check_confidence(confidence: object) -> float:
    """A confidence level must lie strictly between 0 and 1."""
    value = _number(confidence, "The confidence")
    if not 0 < value < 1:
        raise InputError(f"The confidence must be a number in (0, 1), got {confidence!r}.")
    return value
