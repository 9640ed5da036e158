"""Resampling tokens, and the rank statistics as functions of integer row weights.

A token bootstrap draws T token positions with replacement out of the table's T tokens; a
token drawn c times contributes each of its connections c times (connections of one token
move together: they share the token's perturbations and its output SAE's top-k). The
resampled table is therefore the original one with integer row weights ``w[row] =
c[token(row)]``, and every statistic can be computed from the weights without building it:

* weighted mid-ranks: with the rows sorted by a score and grouped into runs of equal
  scores g, the copies of a run occupy ranks B_g + 1 .. B_g + W_g (B_g the weight of the
  runs below, W_g the run's weight), so each gets the mid-rank B_g + (W_g + 1) / 2;
* ROC AUC (Mann–Whitney): AUC = (Σ_pos w·rank − W₊(W₊ + 1)/2) / (W₊ · W₋), ties count ½;
* Spearman ρ: the weighted Pearson correlation of the two weighted mid-ranks (both have the
  weighted mean (W + 1) / 2; NaN when either is constant).

With all weights 1 these are scikit-learn's ``roc_auc_score`` and SciPy's ``spearmanr``
(the tests check that, and that a replicate equals the statistic of the explicitly
resampled table). Percentile intervals use the conservative order statistics (the lower
one for the low end, the higher one for the high end), which never interpolate between
an infinite and a finite replicate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.analysis.statistics import (
    BOOTSTRAP_SEED,
    DEFAULT_TAU,
    N_BOOTSTRAP,
    abs_diff,
    abs_jacobian,
    check_tau,
    exited_flags,
    important_flags,
    ratio_of_sums,
    token_ids,
)
from jsae.errors import InputError

BOOTSTRAPPED = ("auc", "spearman", "ratio", "ratio_without_exits", "exit_mass_share")
"""The statistics that get a bootstrap interval (columns of ``bootstrap_replicates``)."""


def token_resample(n_tokens: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """The tokens each bootstrap replicate draws: an (n_bootstrap, n_tokens) array of token
    indices in 0 .. n_tokens − 1, drawn with replacement by ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    if n_tokens == 0:
        return np.zeros((n_bootstrap, 0), dtype=np.int64)
    return rng.integers(0, n_tokens, size=(n_bootstrap, n_tokens))


def token_counts(draws: np.ndarray, n_tokens: int) -> np.ndarray:
    """How often each replicate drew each token: (n_bootstrap, n_tokens) counts."""
    n_bootstrap = draws.shape[0]
    offsets = (np.arange(n_bootstrap) * n_tokens)[:, None]
    flat = np.bincount((draws + offsets).ravel(), minlength=n_bootstrap * n_tokens)
    return flat.reshape(n_bootstrap, n_tokens).astype(np.float64)


@dataclass(frozen=True)
class RankIndex:
    """A score's ascending sort, computed once, for weighted mid-ranks.

    Args:
        order: the rows in ascending score order (stable).
        run_start, run_end: per sorted position, where its run of equal scores starts and
            ends (one past its last); None when no two scores are equal.
    """

    order: np.ndarray
    run_start: np.ndarray | None
    run_end: np.ndarray | None

    @classmethod
    def of(cls, score: np.ndarray) -> RankIndex:
        score = np.asarray(score)
        order = np.argsort(score, kind="stable")
        ordered = score[order]
        new_run = np.concatenate([[True], ordered[1:] != ordered[:-1]])
        if new_run.all():
            return cls(order, None, None)
        starts = np.flatnonzero(new_run)
        ends = np.append(starts[1:], len(score))
        run = np.cumsum(new_run) - 1
        return cls(order, starts[run], ends[run])

    def sorted_midranks(
        self,
        sorted_weights: np.ndarray,
        out: np.ndarray | None = None,
        work: np.ndarray | None = None,
    ) -> np.ndarray:
        """Mid-ranks in sorted order, given the weights in sorted order (into ``out``, with
        ``work`` of n + 1 floats as scratch, when given: the bootstrap reuses them)."""
        n = len(sorted_weights)
        out = np.empty(n) if out is None else out
        work = np.empty(n + 1) if work is None else work
        work[0] = 0.0
        np.cumsum(sorted_weights, out=work[1:])  # work[i]: weight of the sorted rows before i
        if self.run_start is None:
            # B + (w + 1) / 2 = (the weight up to and with the row) − (w − 1) / 2
            np.multiply(sorted_weights, -0.5, out=out)
            out += work[1:]
        else:
            # (B_start + B_end + 1) / 2: the run's copies span ranks B_start + 1 .. B_end
            np.take(work, self.run_start, out=out)
            out += work[self.run_end]
            out *= 0.5
        out += 0.5
        return out

    def midranks(self, weights: np.ndarray) -> np.ndarray:
        """Each row's mid-rank in the table where row r appears ``weights[r]`` times."""
        sorted_ranks = self.sorted_midranks(np.asarray(weights, dtype=np.float64)[self.order])
        ranks = np.empty(len(self.order))
        ranks[self.order] = sorted_ranks
        return ranks


def _rank_replicates(
    abs_j: np.ndarray,
    abs_d: np.ndarray,
    positive: np.ndarray,
    token: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """AUC of |J| for ``positive`` and Spearman ρ of |J| and |diff| on each replicate (a row
    of ``counts``), from weighted mid-ranks. The rows are put in ascending |J| order once, so
    the |J| ranks need no scatter; the |diff| ranks are moved there by one permutation per
    replicate. Buffers are allocated once: tables can have a million rows."""
    by_j = RankIndex.of(abs_j)
    token, positive = token[by_j.order], positive[by_j.order].astype(np.float64)
    by_d = RankIndex.of(abs_d[by_j.order])
    token_by_d = token[by_d.order]
    n = len(token)
    weights, weights_d, ranks, sorted_d, ranks_d, product = (np.empty(n) for _ in range(6))
    work = np.empty(n + 1)
    aucs, rhos = np.full(len(counts), np.nan), np.full(len(counts), np.nan)
    for b, count in enumerate(counts):
        np.take(count, token, out=weights)
        np.take(count, token_by_d, out=weights_d)
        total = float(weights.sum())
        mean = (total + 1) / 2  # the weighted mean of any weighted mid-ranks
        by_j.sorted_midranks(weights, ranks, work)
        ranks -= mean
        by_d.sorted_midranks(weights_d, sorted_d, work)
        sorted_d -= mean
        ranks_d[by_d.order] = sorted_d
        np.multiply(weights, ranks, out=product)
        w_pos = float(np.dot(weights, positive))
        w_neg = total - w_pos
        if w_pos > 0 and w_neg > 0:
            rank_sum = float(np.dot(product, positive)) + mean * w_pos
            aucs[b] = (rank_sum - w_pos * (w_pos + 1) / 2) / (w_pos * w_neg)
        var_j, cov = float(np.dot(product, ranks)), float(np.dot(product, ranks_d))
        np.multiply(weights, ranks_d, out=product)
        var_d = float(np.dot(product, ranks_d))
        if var_j > 0 and var_d > 0:
            rhos[b] = cov / math.sqrt(var_j * var_d)
    return aucs, rhos


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap replicates, NaN
    replicates (statistic undefined on that resample) left out; (NaN, NaN) if none is left."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (math.nan, math.nan)
    alpha = round((1 - confidence) / 2, 12)  # 0.05, not 0.04999…, for confidence 0.9
    low = np.quantile(values, alpha, method="lower")
    high = np.quantile(values, 1 - alpha, method="higher")
    return (float(low), float(high))


def check_n_bootstrap(n_bootstrap: object) -> int:
    """The number of replicates must be a whole number >= 0."""
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int | np.integer):
        raise InputError(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap!r}.")
    if n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be a whole number >= 0, got {n_bootstrap!r}.")
    return int(n_bootstrap)


def bootstrap_replicates(
    table: pd.DataFrame,
    eps: float,
    tau: float = DEFAULT_TAU,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """The ``BOOTSTRAPPED`` statistics on each of ``n_bootstrap`` token resamples (one row
    each). Replicate b draws the tokens ``token_resample(n_tokens, n_bootstrap, seed)[b]``,
    numbered by ``jsae.analysis.statistics.token_ids``. Ratio-type numbers come from
    per-token sums (counts @ sums); AUC and ρ from weighted mid-ranks, one pass each."""
    n_bootstrap = check_n_bootstrap(n_bootstrap)
    important, abs_d, abs_j = important_flags(table, eps), abs_diff(table), abs_jacobian(table)
    positive = abs_d > check_tau(tau)
    token = token_ids(table)
    n_tokens = int(token.max()) + 1 if len(token) else 0
    counts = token_counts(token_resample(n_tokens, n_bootstrap, seed), n_tokens)
    exited = exited_flags(table)
    kept = np.ones(len(abs_d), dtype=bool) if exited is None else ~exited
    columns = [
        abs_d * important,
        important,
        abs_d * ~important,
        ~important,
        abs_d * (important & kept),
        important & kept,
        abs_d * (~important & kept),
        ~important & kept,
        abs_d * ~kept,
        abs_d,
    ]
    per_token = np.column_stack(
        [np.bincount(token, weights=c.astype(np.float64), minlength=n_tokens) for c in columns]
    )
    sums = counts @ per_token if n_tokens else np.zeros((n_bootstrap, len(columns)))
    with np.errstate(divide="ignore", invalid="ignore"):
        exit_share = np.where(sums[:, 9] > 0, sums[:, 8] / sums[:, 9], np.nan)
    out = {
        "ratio": ratio_of_sums(*sums[:, 0:4].T),
        "ratio_without_exits": ratio_of_sums(*sums[:, 4:8].T),
        "exit_mass_share": exit_share,
    }
    if exited is None:
        out["ratio_without_exits"] = out["exit_mass_share"] = np.full(n_bootstrap, np.nan)
    if n_tokens:
        aucs, rhos = _rank_replicates(abs_j, abs_d, positive, token, counts)
    else:
        aucs = rhos = np.full(n_bootstrap, np.nan)
    return pd.DataFrame({"auc": aucs, "spearman": rhos, **out})[list(BOOTSTRAPPED)]
