"""When pruning the top-k re-selection pays, its knobs, and what it did: the cost model.

``jsae.prune`` computes a bound and the candidates it leaves; whether exact values of those
candidates beat the full scan is a question of cost, answered here per block of rows
(``cost``, ``pays``, ``light_cut``), with ``Backoff`` skipping tries where they keep
failing. The constants were chosen on a 2-core CPU at the research shapes (d_model 512,
d_sae 16384, k 32) and on the bundled default; the results never depend on them, only the
speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from jaxtyping import Float
from torch import Tensor

from jsae.pair import JSAEPair

GATHERED_COST = 2.0
"""A gathered, batched product costs about this many times a full scan's addmm per output
(the gather, and smaller matrices), on the CPU at the research shapes."""
SCAN_COST = 0.1
"""Writing the low-rank bound of every feature and reducing it over the rows cost about
this fraction of a full scan per row, besides the bound's own product."""
WIN = 0.75
"""A block is pruned only when its estimated cost is below this fraction of the full scan's:
the estimates are rough (the constants come from one machine and shape), and a near-tie
would pay for the bound for nothing."""
MAX_SKIP = 16
"""The most blocks ``Backoff`` lets go by without trying to prune."""


PROBE_TOKENS = 8
"""A single-connection block first estimates its candidate counts on this many of its tokens
(``Pruner._probe``), and tries the whole block only when that estimate pays."""
STRONGEST = 2
"""Step 1 computes the exact new values of the token's STRONGEST * k features by z_t."""
HEAVY_FRACTION = 1 / 8
"""The Cauchy–Schwarz prefix is searched among each token's HEAVY_FRACTION * d_sae strongest
features: a row whose prefix is longer is heavy (a light row's candidates are a few percent
of d_sae when the bound holds at all)."""
CUT_QUANTILES = (0.5, 0.75, 0.9, 0.97, 1.0)
"""The low-rank bound's heavy rows are those above one of these quantiles of the rows'
sampled candidate counts (the cheapest, see ``Pruner._sampled_cut``)."""
SAMPLE = 16
"""The low-rank bound first runs on every SAMPLE-th feature: which rows are heavy, and
whether the block's candidates can pay at all."""
FULL_ROWS = 16
"""Rows that fall back to the full scan are scanned at least this many at a time (padded),
so that their products round exactly as the block's full scan does (``Pruner._scan_rows``)."""
BOUNDS = ("prefix", "low_rank")
"""The candidate sets a Pruner tries, in order (``Pruner.bounds``; benchmarks and tests
narrow it to measure or exercise one)."""
RANK_FRACTION = 1 / 8
"""The low-rank bound's basis has p = RANK_FRACTION * d_model directions."""
POWER_STEPS = 2
"""Subspace iteration steps of the low-rank bound's basis (``Pruner.basis``)."""
CHUNK_BYTES = 4 << 20
"""The low-rank bound is evaluated a slice of features at a time, this many bytes of it."""
BASIS_ROWS = 8
"""A block uses the low-rank bound only with at least BASIS_ROWS * p rows per token (U's
products with the encoder cost p rows' full scan) and p + 3 ≤ d_model / 4 (the bound's
inner size, against the full scan's d_model)."""


def prune_row_bytes(pair: JSAEPair, d_model: int) -> int:
    """Bytes pruning adds per row of a block to the full scan's: δ, the bound's left factor,
    the basis's random start and the sampled bound, step 1's exact values; each token's z,
    sorted features, union and map (28 d_sae bytes, shared by its k_in rows at least); the
    low-rank bound's right factors (shared by BASIS_ROWS p rows at least). The bound over
    all features, the candidates' exact values and gathered encoder columns go into the
    block's scan buffer."""
    d_sae, k_in, k_out = pair.d_sae_out, pair.k_in, pair.k_out
    p = max(1, int(RANK_FRACTION * d_model))
    per_row = 4 * d_model + 5 * d_sae // SAMPLE + 8 * (p + 3) + 12 * STRONGEST * k_out
    shared = 28 * d_sae // k_in + 8 * (p + 3) * d_sae // (BASIS_ROWS * p)
    return per_row + shared


@dataclass
class PruneStats:
    """What pruning did so far (for benchmarks; counts, not timed).

    Args:
        blocks, pruned_blocks: blocks of rows seen, and those that took a pruned path.
        rows: rows seen; tried: rows of blocks that computed a bound (see ``Backoff``);
            pruned_rows: rows read off their candidates (certificate held); heavy_rows:
            rows of pruned blocks whose bound admitted too many features; fallback_rows:
            rows whose certificate failed. The last two took the full scan.
        bound_candidates: the candidates each row's own bound admits, summed (how tight the
            bound is; a heavy row counts d_sae; the low-rank bound's count is estimated on
            every ``jsae.prune.SAMPLE``-th feature).
        computed: exact pre-activations computed, summed over rows (full-scan rows count
            d_sae); features: d_sae x rows, what the full scan computes.
    """

    blocks: int = 0
    pruned_blocks: int = 0
    rows: int = 0
    pruned_rows: int = 0
    heavy_rows: int = 0
    fallback_rows: int = 0
    tried: int = 0
    bound_candidates: int = 0
    computed: int = 0
    features: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    @property
    def bound_fraction(self) -> float:
        """The mean fraction of d_sae that a row's own bound leaves as candidates."""
        if not self.tried:
            return math.nan
        return self.bound_candidates * self.rows / (self.tried * self.features)

    @property
    def computed_fraction(self) -> float:
        """Exact pre-activations computed, as a fraction of the full scan's."""
        return self.computed / self.features if self.features else math.nan


def cost(columns: float, d_sae: int, heavy_share: float, bound_cost: float = 0.0) -> float:
    """A pruned block's cost per row as a fraction of the full scan's: every row computes
    ``columns`` gathered exact values (one rectangular product), the heavy rows (a share of
    them) also the full scan, and the bound still to compute costs ``bound_cost``."""
    return columns * GATHERED_COST / d_sae + bound_cost + heavy_share


def pays(rows: int, columns: int, heavy: int, d_sae: int, bound_cost: float = 0.0) -> bool:
    """Whether a pruned block of ``rows`` rows costs clearly less than their full scan."""
    return cost(columns, d_sae, heavy / rows, bound_cost) < WIN


def light_cut(counts: Float[Tensor, "tokens rows"], d_sae: int, least: int) -> tuple[float, float]:
    """Which rows to prune when every pruned (light) row computes the largest light row's
    candidate count (at least ``least``) and the others (heavy) take the full scan: the cut
    (light rows have counts ≤ cut) of least cost, and that cost as a fraction of the full
    scan's, over every cut at one of the rows' counts (``inf``: never light)."""
    flat = counts.flatten().sort().values
    heavy = len(flat) - torch.searchsorted(flat, flat, right=True)
    costs = cost(flat.clamp_min(least), d_sae, heavy / len(flat))
    costs = costs.where(torch.isfinite(flat), torch.inf)
    best = int(costs.argmin())
    return float(flat[best]), float(costs[best])


@dataclass
class Backoff:
    """After a block that pruning could not speed up, the next blocks of its kind take the
    full scan without trying: 1, 2, 4, ... up to ``MAX_SKIP`` blocks, until a try pays
    again. A failed try costs a few percent of a block; this bounds the loss where the bound
    is too loose. (Only speed depends on it: the results are the same either way.)"""

    skipping: int = 0
    wait: int = 0

    def skip(self) -> bool:
        if self.skipping > 0:
            self.skipping -= 1
            return True
        return False

    def record(self, paid: bool) -> None:
        self.wait = 0 if paid else min(MAX_SKIP, max(1, 2 * self.wait))
        self.skipping = self.wait
