"""The split's numbers across ε, and pair kinds compared at the same share of important entries.

Nothing is rerun: the per-connection table holds J and diff for every connection, and
ε only decides which side of the split a connection is on. Sorting |J| once (ascending),
the unimportant connections at ε are a prefix, of length m(ε) = #{|J| ≤ ε} (``searchsorted``,
comparing in the table's dtype exactly as ``jsae.table.is_important`` does), so with
cumulative sums C of |diff|, of counts and of moved flags (|diff| > τ):

* unimportant Σ|diff| = C[m], important Σ|diff| = C[n] − C[m]; the ratio follows
  ``jsae.analysis.statistics.ratio_of_sums`` (``importance_ratio``'s NaN / inf rules);
* the same over the connections that did not exit gives ``ratio_without_exits``, and the
  exited share of the prefix's Σ|diff| gives ``exit_share_unimportant``;
* ``auc_at_eps`` is the ROC AUC of the 0/1 flag |J| > ε as a predictor of moved, which
  for a binary score is the balanced accuracy (TPR + TNR) / 2.

``matched_fraction`` compares pair kinds at their own ε that makes the same share of
connections important: a JSAE's Jacobian is sparser than a plain pair's, so one ε favours
one of them; splitting each at its own top fraction by |J| does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from jsae.analysis.statistics import (
    DEFAULT_TAU,
    abs_diff,
    check_tau,
    exited_flags,
    important_flags,
    ratio_of_sums,
)
from jsae.errors import InputError
from jsae.pair import DEFAULT_KIND
from jsae.table import DEFAULT_EPS, check_eps

EPS_SWEEP_GRID = tuple(float(x) for x in np.logspace(-4, 0, 25))
"""The ε of the sweep: 25 points, log-spaced from 1e-4 to 1 (six per decade)."""
SWEEP_STATISTICS = (
    "fraction_important",
    "ratio",
    "ratio_without_exits",
    "exit_share_unimportant",
    "auc_at_eps",
)
"""The per-ε columns of ``eps_sweep`` (besides ``eps``)."""
MATCHED_FRACTION_DEFAULT = None
"""``matched_fraction``'s default fraction: None means the reference kind's (by default the
JSAE's) share of important connections at ``DEFAULT_EPS``, so the JSAE is split at
``DEFAULT_EPS`` itself and every other kind at the ε that makes as many connections important."""
MATCHED_REFERENCE = DEFAULT_KIND
"""The kind whose fraction at ``DEFAULT_EPS`` sets the matched fraction when none is given."""


def _cumulative(values: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])


def _divide(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, part / whole, np.nan)


def eps_sweep(
    table: pd.DataFrame, grid: Sequence[float] = EPS_SWEEP_GRID, tau: float = DEFAULT_TAU
) -> pd.DataFrame:
    """One row per ε of ``grid``: ``eps`` and the ``SWEEP_STATISTICS`` of the table split
    there (NaN where a side or a class is empty; exit columns NaN without ``exited``)."""
    eps = np.array([check_eps(value) for value in grid], dtype=np.float64)
    tau = check_tau(tau)
    abs_j = np.abs(table["jacobian"].to_numpy())
    order = np.argsort(abs_j, kind="stable")
    sorted_j = abs_j[order]
    dtype = sorted_j.dtype if np.issubdtype(sorted_j.dtype, np.floating) else np.float64
    m = np.searchsorted(sorted_j, eps.astype(dtype), side="right")  # #{|J| <= ε}
    n = len(sorted_j)
    d = abs_diff(table)[order]
    mass = _cumulative(d)
    out = {
        "eps": eps,
        "fraction_important": (n - m) / n if n else np.full(len(eps), np.nan),
        "ratio": ratio_of_sums(mass[n] - mass[m], n - m, mass[m], m),
    }
    exited = exited_flags(table)
    if exited is None:
        out["ratio_without_exits"] = out["exit_share_unimportant"] = np.full(len(eps), np.nan)
    else:
        gone = exited[order]
        kept_mass, kept = _cumulative(d * ~gone), _cumulative(~gone)
        out["ratio_without_exits"] = ratio_of_sums(
            kept_mass[n] - kept_mass[m], kept[n] - kept[m], kept_mass[m], kept[m]
        )
        out["exit_share_unimportant"] = _divide(_cumulative(d * gone)[m], mass[m])
    moved = _cumulative(d > tau)
    positives, negatives = moved[n], n - moved[n]
    if positives and negatives:
        true_positive = (positives - moved[m]) / positives
        true_negative = (m - moved[m]) / negatives
        out["auc_at_eps"] = (true_positive + true_negative) / 2
    else:
        out["auc_at_eps"] = np.full(len(eps), np.nan)
    return pd.DataFrame(out)[["eps", *SWEEP_STATISTICS]]


def _split_numbers(table: pd.DataFrame, important: np.ndarray) -> dict[str, float]:
    """ratio, ratio_without_exits and exit_share_unimportant of a given split."""
    d = abs_diff(table)
    numbers = {
        "ratio": ratio_of_sums(
            d[important].sum(), important.sum(), d[~important].sum(), (~important).sum()
        ),
        "ratio_without_exits": math.nan,
        "exit_share_unimportant": math.nan,
    }
    exited = exited_flags(table)
    if exited is not None:
        imp, unimp = important & ~exited, ~important & ~exited
        numbers["ratio_without_exits"] = ratio_of_sums(
            d[imp].sum(), imp.sum(), d[unimp].sum(), unimp.sum()
        )
        unimportant_mass = d[~important].sum()
        numbers["exit_share_unimportant"] = (
            float(d[~important & exited].sum() / unimportant_mass)
            if unimportant_mass > 0
            else math.nan
        )
    return numbers


def matched_fraction(
    tables: Mapping[str, pd.DataFrame],
    fraction: float | None = MATCHED_FRACTION_DEFAULT,
    reference: str = MATCHED_REFERENCE,
    reference_eps: float = DEFAULT_EPS,
) -> pd.DataFrame:
    """Each kind split at its own top ``fraction`` of connections by |J|.

    For a table of n connections the top k = round(fraction · n) are important and ε is
    the largest |J| outside them (|J| > ε then holds for exactly the top k, fewer when
    |J| ties across the boundary; ``fraction_important`` reports what was reached; ε is 0
    when k = n). With ``fraction`` None the fraction is ``reference``'s share of
    |J| > ``reference_eps`` (``MATCHED_FRACTION_DEFAULT``).

    Returns one row per kind: kind, fraction, eps, fraction_important, ratio,
    ratio_without_exits, exit_share_unimportant, connections.
    """
    if fraction is None:
        if reference not in tables or not len(tables[reference]):
            raise InputError(
                f"No fraction was given and there is no {reference!r} table to take it from."
            )
        fraction = float(important_flags(tables[reference], reference_eps).mean())
    fraction = float(fraction)
    if not 0 <= fraction <= 1:
        raise InputError(
            f"The fraction of important connections must lie in [0, 1], got {fraction!r}."
        )
    rows = []
    for kind, table in tables.items():
        abs_j = np.abs(table["jacobian"].to_numpy())
        n = len(abs_j)
        k = int(math.floor(fraction * n + 0.5))
        descending = np.sort(abs_j)[::-1]
        eps = (float(descending[k]) if k < n else 0.0) if n else math.nan
        important = abs_j > descending.dtype.type(eps) if n else np.zeros(0, dtype=bool)
        rows.append(
            {
                "kind": kind,
                "fraction": fraction,
                "eps": eps,
                "fraction_important": float(important.mean()) if n else math.nan,
                **_split_numbers(table, important),
                "connections": n,
            }
        )
    return pd.DataFrame(rows)


def sweep_frame(
    tables: Mapping[str, pd.DataFrame],
    grid: Sequence[float] = EPS_SWEEP_GRID,
    tau: float = DEFAULT_TAU,
) -> pd.DataFrame:
    """``eps_sweep`` of every kind in long form (kind, eps, statistic, value), for a chart."""
    frames = [
        eps_sweep(table, grid, tau).melt(id_vars="eps", var_name="statistic").assign(kind=kind)
        for kind, table in tables.items()
    ]
    columns = ["kind", "eps", "statistic", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]
