"""One result for "does |J| say what moves?": every ε-free number and the split's at one ε.

``effect_statistics`` computes the point estimates of ``jsae.analysis.statistics`` on a
per-connection table and, for the headline numbers (``jsae.analysis.bootstrap.BOOTSTRAPPED``),
percentile bootstrap intervals over tokens. ``EffectStatistics.summary()`` is the tidy table
(statistic, value, ci_low, ci_high, description) that the CLI and the app print as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from jsae.analysis.bootstrap import (
    BOOTSTRAPPED,
    bootstrap_replicates,
    check_n_bootstrap,
    percentile_interval,
)
from jsae.analysis.statistics import (
    BOOTSTRAP_SEED,
    CAPTURE_FRACTION,
    CAPTURE_POINTS,
    CONFIDENCE,
    DEFAULT_TAU,
    N_BOOTSTRAP,
    UnimportantMoved,
    auc,
    check_confidence,
    check_tau,
    exit_mass_share,
    exit_share_unimportant,
    important_flags,
    mass_capture,
    on_line_share_count,
    on_line_share_mass,
    p_exit,
    ratio,
    ratio_without_exits,
    spearman,
    token_ids,
    unimportant_moved,
)
from jsae.errors import InputError
from jsae.stats import Tolerance
from jsae.table import check_eps

REQUIRED_COLUMNS = ("position", "jacobian", "predicted", "diff")
"""The table columns the statistics read (``exited`` too, when present)."""
SUMMARY_COLUMNS = ("statistic", "value", "ci_low", "ci_high", "description")
"""The columns of ``EffectStatistics.summary()``."""

NAN_CI = (math.nan, math.nan)


@dataclass(frozen=True)
class EffectStatistics:
    """How well |J| predicts each connection's movement m = |diff| on one table.

    Args:
        eps: the ε of the split (important: |J| > ε).
        tau: a connection moved when m > τ.
        tolerance: the "on the line" rule (diff within tolerance of −s·J).
        confidence: coverage of the intervals and of the upper bound.
        n_bootstrap: token resamples behind the intervals (0: no intervals, all NaN).
        seed: the resampling seed.
        n_connections, n_tokens: the table's connections and tokens (``token_ids``).
        fraction_important: share of connections with |J| > ε.
        auc, auc_ci: ROC AUC of |J| for m > τ, and its interval.
        spearman, spearman_ci: Spearman's ρ of |J| and m, and its interval.
        capture_fraction: the top fraction of ``capture``.
        capture: share of Σ m on the top ``capture_fraction`` of connections by |J|.
        capture_oracle: the same for the top by m itself (the most any ranking captures).
        on_line_count, on_line_mass: share of connections on the line, and of Σ m they carry.
        p_exit: share of connections whose output feature left the top k.
        exit_mass_share, exit_mass_share_ci: share of Σ m on exits, and its interval.
        exit_share_unimportant: share of the unimportant connections' Σ m on exits.
        ratio, ratio_ci: mean m important / unimportant, and its interval.
        ratio_without_exits, ratio_without_exits_ci: the same without exited connections.
        unimportant: the unimportant connections that moved, with an exact upper bound.
        capture_curve: ``mass_capture`` at ``CAPTURE_POINTS`` (for a chart).
    """

    eps: float
    tau: float
    tolerance: Tolerance
    confidence: float
    n_bootstrap: int
    seed: int
    n_connections: int
    n_tokens: int
    fraction_important: float
    auc: float
    auc_ci: tuple[float, float]
    spearman: float
    spearman_ci: tuple[float, float]
    capture_fraction: float
    capture: float
    capture_oracle: float
    on_line_count: float
    on_line_mass: float
    p_exit: float
    exit_mass_share: float
    exit_mass_share_ci: tuple[float, float]
    exit_share_unimportant: float
    ratio: float
    ratio_ci: tuple[float, float]
    ratio_without_exits: float
    ratio_without_exits_ci: tuple[float, float]
    unimportant: UnimportantMoved
    capture_curve: pd.DataFrame = field(compare=False, repr=False)

    def summary(self) -> pd.DataFrame:
        """One row per number: statistic, value, ci_low, ci_high (NaN where there is no
        interval) and a plain-language description."""
        eps, tau, top = f"{self.eps:g}", f"{self.tau:g}", f"{self.capture_fraction:.0%}"
        tol = self.tolerance
        rows = [
            ("connections", self.n_connections, NAN_CI,
             "Connections (token, active input feature, active output feature) in the table."),
            ("tokens", self.n_tokens, NAN_CI,
             "Tokens the connections come from; the intervals resample these."),
            ("fraction_important", self.fraction_important, NAN_CI,
             f"Share of connections with |J| > ε = {eps}, the important ones."),
            ("auc", self.auc, self.auc_ci,
             f"Chance that a connection that moved (|diff| > τ = {tau}) has a larger |J| than "
             "one that did not: 0.5 means |J| tells nothing, 1 a perfect ranking."),
            ("spearman", self.spearman, self.spearman_ci,
             "Rank correlation of |J| and |diff| over all connections (1: a larger |J| "
             "always moved more, 0: no relation)."),
            ("capture", self.capture, NAN_CI,
             f"Share of all movement (total |diff|) carried by the {top} of connections with "
             "the largest |J|."),
            ("capture_oracle", self.capture_oracle, NAN_CI,
             f"The most any ranking could capture: the share carried by the {top} of "
             "connections that moved most."),
            ("on_line_count", self.on_line_count, NAN_CI,
             "Share of connections whose diff matches the linear prediction −s·J (within "
             f"{tol.atol:g} + {tol.rtol:g}·|−s·J|)."),
            ("on_line_mass", self.on_line_mass, NAN_CI,
             "Share of all movement carried by connections whose diff matches −s·J."),
            ("p_exit", self.p_exit, NAN_CI,
             "Share of connections whose output feature dropped out of the top k when the "
             "input feature was removed (an exit, which no derivative sees)."),
            ("exit_mass_share", self.exit_mass_share, self.exit_mass_share_ci,
             "Share of all movement that comes from exits."),
            ("exit_share_unimportant", self.exit_share_unimportant, NAN_CI,
             f"Share of the unimportant connections' movement (|J| ≤ ε = {eps}) that comes "
             "from exits."),
            ("ratio", self.ratio, self.ratio_ci,
             f"Mean |diff| of important connections over unimportant ones at ε = {eps} "
             "(large: |J| > ε picks out what moves)."),
            ("ratio_without_exits", self.ratio_without_exits, self.ratio_without_exits_ci,
             "The same ratio with exits left out: the movement a derivative could see."),
            ("unimportant_connections", self.unimportant.connections, NAN_CI,
             f"Connections with |J| ≤ ε = {eps}, the unimportant ones."),
            ("unimportant_moved", self.unimportant.share, NAN_CI,
             f"Share of unimportant connections that moved (|diff| > τ = {tau})."),
            ("unimportant_moved_upper", self.unimportant.upper, NAN_CI,
             f"{self.confidence:.0%} upper bound on that share (one-sided, exact "
             "Clopper–Pearson): at most this many unimportant connections move."),
        ]  # fmt: skip
        return pd.DataFrame(
            [(name, float(value), lo, hi, text) for name, value, (lo, hi), text in rows],
            columns=list(SUMMARY_COLUMNS),
        )


def effect_statistics(
    table: pd.DataFrame,
    eps: float,
    tau: float = DEFAULT_TAU,
    tolerance: Tolerance | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
    capture_fraction: float = CAPTURE_FRACTION,
) -> EffectStatistics:
    """Every number of ``EffectStatistics`` on ``table`` at ε, with token-bootstrap intervals
    (``n_bootstrap`` resamples drawn with ``seed``; 0 skips them). An empty table gives NaN
    throughout, a table without ``exited`` NaN for the exit numbers."""
    missing = [name for name in REQUIRED_COLUMNS if name not in table.columns]
    if missing:
        raise InputError(f"The connection table lacks the column(s) {', '.join(missing)}.")
    eps, tau = check_eps(eps), check_tau(tau)
    confidence = check_confidence(confidence)
    n_bootstrap = check_n_bootstrap(n_bootstrap)
    tolerance = tolerance or Tolerance()
    curve = mass_capture(table, CAPTURE_POINTS)
    top = mass_capture(table, [capture_fraction])
    intervals = dict.fromkeys(BOOTSTRAPPED, NAN_CI)
    if n_bootstrap and len(table):
        replicates = bootstrap_replicates(table, eps, tau, n_bootstrap, seed)
        intervals = {name: percentile_interval(replicates[name], confidence) for name in intervals}
    important = important_flags(table, eps)
    return EffectStatistics(
        eps=eps,
        tau=tau,
        tolerance=tolerance,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        seed=seed,
        n_connections=len(table),
        n_tokens=int(token_ids(table).max()) + 1 if len(table) else 0,
        fraction_important=float(important.mean()) if len(table) else math.nan,
        auc=auc(table, tau),
        auc_ci=intervals["auc"],
        spearman=spearman(table),
        spearman_ci=intervals["spearman"],
        capture_fraction=float(capture_fraction),
        capture=float(top["by_jacobian"].iloc[0]),
        capture_oracle=float(top["oracle"].iloc[0]),
        on_line_count=on_line_share_count(table, tolerance),
        on_line_mass=on_line_share_mass(table, tolerance),
        p_exit=p_exit(table),
        exit_mass_share=exit_mass_share(table),
        exit_mass_share_ci=intervals["exit_mass_share"],
        exit_share_unimportant=exit_share_unimportant(table, eps),
        ratio=ratio(table, eps),
        ratio_ci=intervals["ratio"],
        ratio_without_exits=ratio_without_exits(table, eps),
        ratio_without_exits_ci=intervals["ratio_without_exits"],
        unimportant=unimportant_moved(table, eps, tau, confidence),
        capture_curve=curve,
    )
