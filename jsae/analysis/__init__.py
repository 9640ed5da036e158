"""The analysis layer: pure functions from the engine's output (and the model/pair where they
must rerun it) to typed results with ``.summary()``; see ``health`` (how degenerate a pair's
codes are)."""

from jsae.analysis.health import (
    FLAT_CV,
    TINY_MARGIN,
    UNFIRED_OUT,
    PairHealth,
    is_flat,
    is_tiny_margin,
    pair_health,
)

__all__ = [
    "FLAT_CV",
    "TINY_MARGIN",
    "UNFIRED_OUT",
    "PairHealth",
    "is_flat",
    "is_tiny_margin",
    "pair_health",
]
