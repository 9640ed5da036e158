"""The analysis layer: pure functions from the engine's output (and the model/pair where they
must rerun it) to typed results with ``.summary()``.

``health`` — how degenerate a pair's codes are; ``statistics`` — ε-free numbers (AUC,
Spearman, mass capture, on the line, exits) and the split's at one ε; ``bootstrap`` — token
resampling for their intervals; ``effect`` — the ``EffectStatistics`` result and its tidy
summary; ``sweep`` — the same across ε and pair kinds compared at a matched fraction of
important connections; ``verdict`` — the answer from those numbers and the health;
``joint`` — joint ablation: an output feature's inputs removed together, in orders;
``faithfulness`` — what that says (sets removed together, curves, the score);
``downstream`` — the next-token KL when output features keep only their top-m inputs;
``downstream_sweep`` — that KL across a source's layers, kinds and modes;
``report`` — ``analyse``, the one call every face makes, and its ``Analysis`` result;
``ground_truth`` — the connections against an MLP's true edges, where they are known.
"""

from jsae.analysis.bootstrap import BOOTSTRAPPED, bootstrap_replicates, percentile_interval
from jsae.analysis.downstream import (
    KEEP_ORDERS,
    DownstreamKL,
    downstream_kl,
    fewer_than_random,
    kl_areas,
)
from jsae.analysis.downstream_sweep import (
    DOWNSTREAM_SUMMARY_COLUMNS,
    downstream_results,
    summary_frame,
)
from jsae.analysis.effect import EffectStatistics, effect_statistics
from jsae.analysis.faithfulness import (
    SETS,
    JointStatistics,
    JointSums,
    faithfulness_score,
    joint_statistics,
    set_frame,
)
from jsae.analysis.ground_truth import RECOVERY_COLUMNS, EdgeRecovery, edge_flags, edge_recovery
from jsae.analysis.health import (
    FLAT_CV,
    TINY_MARGIN,
    UNFIRED_OUT,
    PairHealth,
    is_flat,
    is_tiny_margin,
    pair_health,
)
from jsae.analysis.joint import JOINT_SEED, ORDERS, JointCurves, joint_curves
from jsae.analysis.report import (
    Analysis,
    analyse,
    prompt_curves,
    prompt_downstream,
    prompt_health,
)
from jsae.analysis.statistics import (
    BOOTSTRAP_SEED,
    CAPTURE_FRACTION,
    CAPTURE_POINTS,
    CONFIDENCE,
    DEFAULT_TAU,
    N_BOOTSTRAP,
    TOKEN_KEYS,
    UnimportantMoved,
    auc,
    capture_at,
    clopper_pearson_upper,
    exit_mass_share,
    exit_share_unimportant,
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
from jsae.analysis.sweep import (
    EPS_SWEEP_GRID,
    MATCHED_FRACTION_DEFAULT,
    MATCHED_REFERENCE,
    SWEEP_STATISTICS,
    eps_sweep,
    matched_fraction,
    sweep_frame,
)
from jsae.analysis.verdict import (
    DENSE_FRACTION,
    DENSE_LEAD,
    EXIT_DOMINATED,
    GOOD_AUC,
    JOINT_MOVES,
    STRONG_RATIO,
    WEAK_RATIO,
    Verdict,
    is_dense,
    verdict,
)

__all__ = [
    "BOOTSTRAPPED",
    "BOOTSTRAP_SEED",
    "CAPTURE_FRACTION",
    "CAPTURE_POINTS",
    "CONFIDENCE",
    "DEFAULT_TAU",
    "EPS_SWEEP_GRID",
    "FLAT_CV",
    "MATCHED_FRACTION_DEFAULT",
    "MATCHED_REFERENCE",
    "N_BOOTSTRAP",
    "RECOVERY_COLUMNS",
    "SWEEP_STATISTICS",
    "TINY_MARGIN",
    "TOKEN_KEYS",
    "UNFIRED_OUT",
    "EdgeRecovery",
    "EffectStatistics",
    "PairHealth",
    "UnimportantMoved",
    "auc",
    "bootstrap_replicates",
    "capture_at",
    "clopper_pearson_upper",
    "edge_flags",
    "edge_recovery",
    "effect_statistics",
    "eps_sweep",
    "exit_mass_share",
    "exit_share_unimportant",
    "is_flat",
    "is_tiny_margin",
    "mass_capture",
    "matched_fraction",
    "on_line_share_count",
    "on_line_share_mass",
    "p_exit",
    "pair_health",
    "percentile_interval",
    "ratio",
    "ratio_without_exits",
    "spearman",
    "sweep_frame",
    "token_ids",
    "unimportant_moved",
    "Analysis",
    "Verdict",
    "DENSE_FRACTION",
    "DENSE_LEAD",
    "EXIT_DOMINATED",
    "GOOD_AUC",
    "STRONG_RATIO",
    "WEAK_RATIO",
    "analyse",
    "prompt_curves",
    "prompt_downstream",
    "is_dense",
    "prompt_health",
    "JOINT_MOVES",
    "JOINT_SEED",
    "ORDERS",
    "SETS",
    "JointCurves",
    "JointStatistics",
    "JointSums",
    "faithfulness_score",
    "joint_curves",
    "joint_statistics",
    "set_frame",
    "KEEP_ORDERS",
    "DownstreamKL",
    "downstream_kl",
    "fewer_than_random",
    "kl_areas",
    "DOWNSTREAM_SUMMARY_COLUMNS",
    "downstream_results",
    "summary_frame",
    "verdict",
]
