"""Summary statistics that merge across shards: per-shard accumulators, combined exactly.

A corpus run writes its connections as many Parquet shards; its statistics are built shard by
shard (or record batch by record batch) and merged. Each experiment (important |J| > ε,
unimportant |J| <= ε) keeps

* the number of connections and of connections within tolerance of −s·J (exact integers),
* the sums of diff and of |diff| as exact integers: every float64 is an integer multiple of
  2^-1074, so each sum is kept as that integer count (``exact_sum``, in units of
  ``2**-SUM_SHIFT``) and merging adds integers. The merged sums, and every mean built from
  them, are therefore bitwise the same however the rows were split into shards (and equal to
  ``math.fsum`` of all the values, the correctly rounded total),
* fixed-grid histograms of diff and of |diff| (exact integer counts on one grid shared by every
  shard and every run, so they add),
* the decomposition's mergeable parts: how many connections' output feature left the top k
  (``exited``), and the |diff| mass of those and of the connections within tolerance
  (exact sums too), so P(exit), the exits' share of the mass, on-the-line by mass and the
  ratio without exits are exact too.

So *count, mean diff, mean |diff|, within-tolerance and the important/unimportant ratio are
exact*; the *median and 99th percentile of |diff| are approximated from the |diff| histogram*:
its bins are 1/100 of a decade wide between 1e-9 and 1e6, so a quantile in that range is found
to within one bin, about 2.3 % relative (values below 1e-9 fall in one bin [0, 1e-9); values
above 1e6 in one overflow bin, reported as 1e6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jsae.exact import exact_sum, exact_value
from jsae.stats import Tolerance, empty_summary, summary_frame
from jsae.table import is_important

LOW = 1e-9
HIGH = 1e6
BINS_PER_DECADE = 100
_DECADES = round(math.log10(HIGH / LOW))
N_LOG_BINS = _DECADES * BINS_PER_DECADE
ABS_EDGES = np.concatenate(
    [[0.0], np.logspace(math.log10(LOW), math.log10(HIGH), N_LOG_BINS + 1), [np.inf]]
)
"""Edges of the |diff| grid: [0, 1e-9), 1500 log bins up to 1e6, then [1e6, inf]."""
N_ABS_BINS = len(ABS_EDGES) - 1
DIFF_EDGES = np.concatenate([-ABS_EDGES[::-1], ABS_EDGES[1:]])
"""Edges of the diff grid: the |diff| grid mirrored around 0 (−0 and +0 both fall in [0, 1e-9))."""
N_DIFF_BINS = len(DIFF_EDGES) - 1


def abs_bin(absdiff: np.ndarray) -> np.ndarray:
    """The |diff| grid bin of each value, [edge, next edge) as ``np.histogram`` bins (the last,
    [1e6, inf], closed). A search on the edges themselves, so a value exactly on an edge is
    in that edge's bin (a log10 formula rounds some edges into the bin below). NaN is not
    binned: callers drop it first."""
    idx = np.searchsorted(ABS_EDGES, absdiff, side="right") - 1
    return np.clip(idx, 0, N_ABS_BINS - 1).astype(np.int64)


def diff_bin(diff: np.ndarray, abs_idx: np.ndarray) -> np.ndarray:
    """The diff grid bin of each value, from its |diff| bin: negatives mirror positives."""
    return np.where(diff < 0, N_ABS_BINS - 1 - abs_idx, N_ABS_BINS + abs_idx)


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int64)


@dataclass
class ExperimentStats:
    """Mergeable statistics of one experiment's connections.

    Args:
        count: number of connections.
        within: how many were within tolerance of −s·J.
        sum_diff, sum_abs_diff: exact sums of diff and |diff| (``exact_sum``'s units).
        hist_diff: counts on ``DIFF_EDGES``; hist_abs: counts on ``ABS_EDGES``.
        exited: how many connections' output feature left the top k.
        sum_abs_exited, sum_abs_within: |diff| summed exactly over those, and over the
            connections within tolerance.
    """

    count: int = 0
    within: int = 0
    sum_diff: int = 0
    sum_abs_diff: int = 0
    hist_diff: np.ndarray = field(default_factory=lambda: _zeros(N_DIFF_BINS))
    hist_abs: np.ndarray = field(default_factory=lambda: _zeros(N_ABS_BINS))
    exited: int = 0
    sum_abs_exited: int = 0
    sum_abs_within: int = 0

    @classmethod
    def of(
        cls, diff: np.ndarray, within: np.ndarray, exited: np.ndarray | None = None
    ) -> ExperimentStats:
        """Statistics of one batch: ``diff`` per connection, its within-tolerance flag and
        whether its output feature left the top k (None: no exits recorded)."""
        diff = np.asarray(diff, dtype=np.float64)
        absdiff = np.abs(diff)
        a_idx = abs_bin(absdiff)
        within = np.asarray(within, dtype=bool)
        exited = np.zeros(len(diff), bool) if exited is None else np.asarray(exited, bool)
        return cls(
            count=len(diff),
            within=int(np.count_nonzero(within)),
            sum_diff=exact_sum(diff),
            sum_abs_diff=exact_sum(absdiff),
            hist_diff=np.bincount(diff_bin(diff, a_idx), minlength=N_DIFF_BINS),
            hist_abs=np.bincount(a_idx, minlength=N_ABS_BINS),
            exited=int(np.count_nonzero(exited)),
            sum_abs_exited=exact_sum(absdiff[exited]),
            sum_abs_within=exact_sum(absdiff[within]),
        )

    def merge(self, other: ExperimentStats) -> ExperimentStats:
        return ExperimentStats(
            count=self.count + other.count,
            within=self.within + other.within,
            sum_diff=self.sum_diff + other.sum_diff,
            sum_abs_diff=self.sum_abs_diff + other.sum_abs_diff,
            hist_diff=self.hist_diff + other.hist_diff,
            hist_abs=self.hist_abs + other.hist_abs,
            exited=self.exited + other.exited,
            sum_abs_exited=self.sum_abs_exited + other.sum_abs_exited,
            sum_abs_within=self.sum_abs_within + other.sum_abs_within,
        )

    def decomposition(self) -> dict[str, float]:
        """``DECOMPOSITION_COLUMNS``: P(exit), the exits' share of the |diff| mass, mean |diff|
        without the exits, and on-the-line as a share of the mass (all exact)."""
        total, exits = self.sum_abs_diff, self.sum_abs_exited
        stays = self.count - self.exited
        return {
            "p_exit": self.exited / self.count if self.count else math.nan,
            "exit_mass_share": exits / total if total > 0 else math.nan,
            "mean_abs_diff_without_exits": (
                exact_value(total - exits, stays) if stays else math.nan
            ),
            "on_line_mass_share": self.sum_abs_within / total if total > 0 else math.nan,
        }

    def abs_quantile(self, q: float) -> float:
        """The q-quantile of |diff| from the histogram, as numpy's default: linear between the
        order statistics at ranks floor and ceil of q·(n−1). Each order statistic is placed
        log-linearly inside its bin, so the result is within one bin (~2.3 %) of the exact
        value."""
        if self.count == 0:
            return math.nan
        rank = q * (self.count - 1)
        lo = self._order_statistic(math.floor(rank))
        hi = self._order_statistic(math.ceil(rank))
        return lo + (rank - math.floor(rank)) * (hi - lo)

    def _order_statistic(self, k: int) -> float:
        """An estimate of the k-th smallest |diff| (0-based) from the histogram."""
        cum = np.cumsum(self.hist_abs)
        b = min(int(np.searchsorted(cum, k, side="right")), N_ABS_BINS - 1)
        below = int(cum[b - 1]) if b else 0
        frac = (k - below + 0.5) / self.hist_abs[b]
        lo, hi = ABS_EDGES[b], ABS_EDGES[b + 1]
        if b == N_ABS_BINS - 1:
            return float(lo)
        if b == 0:
            return float(lo + frac * (hi - lo))
        return float(lo * (hi / lo) ** frac)

    def describe(self) -> dict[str, float]:
        """The ``jsae.stats.SUMMARY_COLUMNS`` of this experiment."""
        if self.count == 0:
            return empty_summary()
        return {
            "connections": self.count,
            "mean_diff": exact_value(self.sum_diff, self.count),
            "mean_abs_diff": exact_value(self.sum_abs_diff, self.count),
            "median_abs_diff": self.abs_quantile(0.5),
            "p99_abs_diff": self.abs_quantile(0.99),
            "within_tolerance": self.within / self.count,
        }

    def to_dict(self) -> dict:
        """JSON-able form (histograms stored sparsely)."""
        nz_d, nz_a = np.flatnonzero(self.hist_diff), np.flatnonzero(self.hist_abs)
        return {
            "count": self.count,
            "within": self.within,
            "sum_diff": self.sum_diff,
            "sum_abs_diff": self.sum_abs_diff,
            "hist_diff": [nz_d.tolist(), self.hist_diff[nz_d].tolist()],
            "hist_abs": [nz_a.tolist(), self.hist_abs[nz_a].tolist()],
            "exited": self.exited,
            "sum_abs_exited": self.sum_abs_exited,
            "sum_abs_within": self.sum_abs_within,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentStats:
        hist_diff, hist_abs = _zeros(N_DIFF_BINS), _zeros(N_ABS_BINS)
        hist_diff[data["hist_diff"][0]] = data["hist_diff"][1]
        hist_abs[data["hist_abs"][0]] = data["hist_abs"][1]
        return cls(
            count=int(data["count"]),
            within=int(data["within"]),
            sum_diff=_exact(data["sum_diff"]),
            sum_abs_diff=_exact(data["sum_abs_diff"]),
            hist_diff=hist_diff,
            hist_abs=hist_abs,
            exited=int(data.get("exited", 0)),
            sum_abs_exited=_exact(data.get("sum_abs_exited", 0)),
            sum_abs_within=_exact(data.get("sum_abs_within", 0)),
        )


DECOMPOSITION_COLUMNS = (
    "p_exit",
    "exit_mass_share",
    "mean_abs_diff_without_exits",
    "on_line_mass_share",
)
"""The exact, mergeable part of the decomposition that ``CorpusStats.decomposition`` gives."""


@dataclass
class CorpusStats:
    """Both experiments' mergeable statistics at one ε and tolerance.

    Args:
        eps: the ε connections were split at (important: |J| > ε).
        tolerance: the rule for "within tolerance of −s·J".
        important, unimportant: each experiment's statistics.
    """

    eps: float
    tolerance: Tolerance = field(default_factory=Tolerance)
    important: ExperimentStats = field(default_factory=ExperimentStats)
    unimportant: ExperimentStats = field(default_factory=ExperimentStats)

    @classmethod
    def of(
        cls,
        jacobian: np.ndarray,
        predicted: np.ndarray,
        diff: np.ndarray,
        eps: float,
        tolerance: Tolerance | None = None,
        exited: np.ndarray | None = None,
    ) -> CorpusStats:
        """Statistics of one batch of connections (columns of a shard or a result table)."""
        tol = tolerance or Tolerance()
        diff = np.asarray(diff, dtype=np.float64)
        predicted = np.asarray(predicted, dtype=np.float64)
        keep = ~np.isnan(diff)
        diff, predicted, jacobian = diff[keep], predicted[keep], np.asarray(jacobian)[keep]
        exited = np.zeros(len(diff), bool) if exited is None else np.asarray(exited, bool)[keep]
        within = tol.within(diff, predicted)
        important = is_important(jacobian, eps)
        return cls(
            eps,
            tol,
            ExperimentStats.of(diff[important], within[important], exited[important]),
            ExperimentStats.of(diff[~important], within[~important], exited[~important]),
        )

    def merge(self, other: CorpusStats) -> CorpusStats:
        if self.eps != other.eps or self.tolerance != other.tolerance:
            raise ValueError("Only statistics at the same ε and tolerance merge.")
        return CorpusStats(
            self.eps,
            self.tolerance,
            self.important.merge(other.important),
            self.unimportant.merge(other.unimportant),
        )

    @property
    def all(self) -> ExperimentStats:
        return self.important.merge(self.unimportant)

    def summary(self) -> pd.DataFrame:
        """Like ``jsae.stats.summarize``: rows important, unimportant, all (median and p99 of
        |diff| from the histogram, everything else exact)."""
        return summary_frame(
            self.important.describe(), self.unimportant.describe(), self.all.describe()
        )

    def decomposition(self) -> pd.DataFrame:
        """``DECOMPOSITION_COLUMNS`` for the rows important, unimportant, all (exact)."""
        rows = {
            "important": self.important.decomposition(),
            "unimportant": self.unimportant.decomposition(),
            "all": self.all.decomposition(),
        }
        frame = pd.DataFrame.from_dict(rows, orient="index")[list(DECOMPOSITION_COLUMNS)]
        frame.index.name = "experiment"
        return frame

    def ratio_without_exits(self) -> float:
        """Mean |diff| of important over unimportant connections, exits left out of both."""
        imp = self.important.decomposition()["mean_abs_diff_without_exits"]
        unimp = self.unimportant.decomposition()["mean_abs_diff_without_exits"]
        if math.isnan(imp) or math.isnan(unimp):
            return math.nan
        return imp / unimp if unimp > 0 else (math.inf if imp > 0 else math.nan)

    def histogram(self, of: str = "abs") -> pd.DataFrame:
        """The non-empty bins of the |diff| (``of="abs"``) or diff (``of="diff"``) grid:
        columns bin_left, bin_right, important, unimportant."""
        edges, imp, unimp = (
            (ABS_EDGES, self.important.hist_abs, self.unimportant.hist_abs)
            if of == "abs"
            else (DIFF_EDGES, self.important.hist_diff, self.unimportant.hist_diff)
        )
        nz = np.flatnonzero(imp + unimp)
        return pd.DataFrame(
            {
                "bin_left": edges[nz],
                "bin_right": edges[nz + 1],
                "important": imp[nz],
                "unimportant": unimp[nz],
            }
        )

    def to_dict(self) -> dict:
        return {
            "eps": self.eps,
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
            "important": self.important.to_dict(),
            "unimportant": self.unimportant.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CorpusStats:
        return cls(
            float(data["eps"]),
            Tolerance(**data["tolerance"]),
            ExperimentStats.from_dict(data["important"]),
            ExperimentStats.from_dict(data["unimportant"]),
        )


def _exact(stored: int | list[float]) -> int:
    """A stored sum: an exact integer, or an older (hi, lo) double-double pair."""
    return stored if isinstance(stored, int) else exact_sum(np.asarray(stored, np.float64))
