"""Certified pruning of the output SAE's top-k re-selection: the same top k, fewer products.

A perturbed row r of token t feeds the output SAE y'_r (its input, ``mlp_out' - b_dec``),
where the unperturbed token fed y_t. The row's new top k is read on every output feature's
pre-activation z'_rm = y'_r · w_m + b_m (w_m = W_enc[:, m]). The full scan computes all d_sae
of them: a [rows, d_model] @ [d_model, d_sae] product, most of the engine's time.

**Pruning.** With δ_r = y'_r - y_t and z_tm the unperturbed pre-activations (b_m and b_dec
cancel), z'_rm = z_tm + δ_r · w_m, and for any orthonormal U [d_model, p] (P⊥ = I - U Uᵀ)

    z'_rm ≤ ub_rm = z_tm + (Uᵀδ_r) · (Uᵀw_m) + ‖P⊥δ_r‖ ‖P⊥w_m‖ + τ_r

(Cauchy–Schwarz on the part outside U; p = 0 is plain Cauchy–Schwarz, z_tm + ‖δ_r‖ ‖w_m‖).
τ_r covers the rounding of every float product involved (worst-case γ_n bounds, see
``margin``). The row's new k-th value is at least L_r, the k-th largest of the exact new
values of the token's 2k strongest features, so a feature with ub_rm < θ_r = L_r - τ_r can
never enter the row's top k. Per block of rows:

1. z_t of every feature, and exact z'_rm for the token's 2k strongest: L_r and θ_r;
2. **Cauchy–Schwarz prefix.** z_tm + ‖δ_r‖ ‖w_m‖ ≥ θ_r needs z_tm ≥ θ_r - ‖δ_r‖ max ‖w‖,
   so row r's candidates lie in a prefix of the token's features sorted by z_t (a binary
   search among the first ``HEAVY_FRACTION`` of d_sae). The rows with the longest prefixes
   are left *heavy* (full scan) where that costs least (``light_cut``); if the block then
   pays (``prune_policy``), the light rows' longest prefix holds the candidates;
3. **low-rank bound** (many rows per token, ``jsae.prune_lowrank``): ub_rm - θ_r for every
   feature as batched products of inner size p + 3, U each token's principal directions of
   its rows' δ; a token's candidates are the features whose bound reaches θ_r on any of
   its light rows, and its 2k strongest;
4. the candidates' exact z'_rm (one gathered, batched product), their top k, and the
   **certificate** per row: the k-th value found is at least θ_r, so at least every
   non-candidate's bound. Heavy rows, and rows whose certificate fails (NaN, or a rounding
   tie at θ_r), take the full scan.

**When.** Whether a block pays is a question of cost (``jsae.prune_policy``): a block
first runs steps 1–2a on ``PROBE_TOKENS`` of its tokens and tries the whole block only when
that sampled estimate of its candidate counts pays; a block that does not pay takes the
full scan, and ``Backoff`` skips the next tries of that kind for a while, so a pair whose
bound is too loose loses a few tokens' bound per try. The top k found is the row's top k
and its values are the same products (to float rounding; bit for bit at the research
shapes, see ``_scan_rows``), so ``acts``, ``pre``, ``exited`` and ``entered`` equal the full
scan's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import TopKSAE
from torch import Tensor

from jsae import prune_policy
from jsae.prune_lowrank import LowRank
from jsae.prune_policy import (
    BASIS_ROWS,
    BOUNDS,
    FULL_ROWS,
    HEAVY_FRACTION,
    RANK_FRACTION,
    STRONGEST,
    Backoff,
    PruneStats,
    light_cut,
)
from jsae.reselect import Perturbed, read_tracked, reselect_full


class _Prefix(NamedTuple):
    """Steps 1–2a on a block (``Pruner._prefix``): z_t, each token's features by z_t
    (the first ``reach``), its ``strongest``, δ, ‖δ‖², θ, rows whose θ is not finite, how
    many features reach θ (``unknown``: all of ``reach`` or broken), and counts (inf where
    unknown; float32, exact to 2^24 whatever the encoder's dtype: a light row's prefix must
    not be cut short by rounding)."""

    z: Float[Tensor, "tokens d_sae"]
    order: Int[Tensor, "tokens reach"]
    first: Int[Tensor, "tokens strongest"]
    delta: Float[Tensor, "tokens rows d_model"]
    delta_sq: Float[Tensor, "tokens rows"]
    threshold: Float[Tensor, "tokens rows"]
    broken: Bool[Tensor, "tokens rows"]
    reach: Int[Tensor, "tokens rows"]
    unknown: Bool[Tensor, "tokens rows"]
    counts: Float[Tensor, "tokens rows"]


class Pruner:
    """Certified pruning of the output SAE's top-k re-selection (see the module docstring).

    Holds no state that a run writes, except ``stats``: one Pruner may serve several
    threads (the app shares a sandwich between sessions); ``stats`` is then approximate.
    """

    def __init__(self, sae: TopKSAE):
        self.W: Float[Tensor, "d_model d_sae"] = sae.W_enc.detach()
        self.b: Float[Tensor, " d_sae"] = sae.b_enc.detach()
        self.W_rows: Float[Tensor, "d_sae d_model"] = self.W.T.contiguous()  # to gather
        self.norm_sq: Float[Tensor, " d_sae"] = self.W.square().sum(0)
        self.w_max = float(self.norm_sq.max().sqrt())
        self.b_max = float(self.b.abs().max())
        self.k = sae.cfg.k
        d_model, d_sae = self.W.shape
        self.strongest = min(d_sae, STRONGEST * self.k)
        self.reach = min(d_sae, max(self.strongest, int(HEAVY_FRACTION * d_sae)))
        self.rank = max(1, int(RANK_FRACTION * d_model))
        self.unit = torch.finfo(self.W.dtype).eps / 2
        self.stats = PruneStats()
        self.backoff = {False: Backoff(), True: Backoff()}  # Cauchy–Schwarz, low-rank
        self.bounds = BOUNDS
        self.low_rank = LowRank(self.W, self.norm_sq, self.rank, self.strongest, self.eta)

    def eta(self, p: int) -> float:
        """Relative widening of the residual norms (and of ‖δ‖ in Cauchy–Schwarz): covers
        the rounding of ‖a‖² − ‖Uᵀa‖² and U's departure from orthonormality."""
        return 8 * (self.W.shape[0] + p + 2) * self.unit

    def margin(
        self, y_norm: Float[Tensor, " tokens"], delta_norm: Float[Tensor, "tokens rows"], p: int
    ) -> Float[Tensor, "tokens rows"]:
        """τ_r: four times the worst-case rounding of the products a bound compares.

        A length-n dot product in float is off by at most γ_n Σ|a_i||b_i| (γ_n ≈ n·u), so
        each computed z_tm, z'_rm and L_r is within γ (|b_m| + ‖y‖ ‖w_m‖) of its exact value
        and the projected product within √(p+1) γ ‖δ‖ ‖w_m‖; ‖y'_r‖ ≤ ‖y_t‖ + ‖δ_r‖."""
        gamma = (self.W.shape[0] + p + 3) * self.unit
        scale = self.b_max + 2 * (y_norm[:, None] + delta_norm) * self.w_max
        return 4 * gamma * (scale + math.sqrt(p + 1) * delta_norm * self.w_max)

    def _exact(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        features: Int[Tensor, "tokens c"],
        space: Float[Tensor, " n"] | None = None,
    ) -> Float[Tensor, "tokens rows c"]:
        """z'_rm for each token's ``features`` only: gathered, batched products.

        With ``space`` (the block's scan buffer, free by then) the values and the gathered
        encoder columns live in it, the columns for as many tokens at a time as fit: no more
        memory than the full scan's, and no fresh allocation (which costs as much as the
        product)."""
        (tokens, rows, d_model), c = y_rows.shape, features.shape[1]
        bias = self.b[features][:, None, :]
        if space is None or space.numel() < tokens * rows * c + c * d_model:
            columns = self.W_rows[features].transpose(1, 2)
            return torch.baddbmm(bias, y_rows, columns)
        values = space[: tokens * rows * c].view(tokens, rows, c)
        scratch = space[tokens * rows * c :]
        step = min(tokens, scratch.numel() // (c * d_model))
        for t0 in range(0, tokens, step):
            t = slice(t0, t0 + step)
            n = len(features[t])
            columns = scratch[: n * c * d_model].view(n * c, d_model)
            torch.index_select(self.W_rows, 0, features[t].reshape(-1), out=columns)
            columns = columns.view(n, c, d_model).transpose(1, 2)
            torch.baddbmm(bias[t], y_rows[t], columns, out=values[t])
        return values

    def reselect(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        y_tok: Float[Tensor, "tokens d_model"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae"] | None = None,
        out: Perturbed | None = None,
    ) -> Perturbed:
        """The rows' top-k re-selection read at ``out_idx``, as ``reselect_full`` gives it
        on ``y_rows @ W_enc + b_enc``, from as few exact pre-activations as a bound
        certifies."""
        tokens, rows, d_model = y_rows.shape
        d_sae = self.W.shape[1]
        if buffer is None:
            buffer = y_rows.new_empty(tokens * rows, d_sae)
        scan = buffer[: tokens * rows].view(tokens, rows, d_sae)
        st = self.stats
        st.blocks, st.rows = st.blocks + 1, st.rows + tokens * rows
        st.features += scan.numel()
        low_rank = rows >= BASIS_ROWS * self.rank and 4 * (self.rank + 3) <= d_model
        backoff = self.backoff[low_rank]
        if self.reach <= self.strongest or backoff.skip():
            return self._full(y_rows, out_idx, scan, out)
        result = None
        if low_rank or self._probe(y_rows, y_tok):
            result = self._prune(y_rows, y_tok, out_idx, buffer, out, low_rank)
        backoff.record(paid=result is not None)
        return self._full(y_rows, out_idx, scan, out) if result is None else result

    def _probe(
        self, y_rows: Float[Tensor, "tokens rows d_model"], y_tok: Float[Tensor, "tokens d_model"]
    ) -> bool:
        """Whether the Cauchy–Schwarz prefix may pay on this block, from steps 1–2a on
        ``PROBE_TOKENS`` of its tokens spread evenly (their counts recorded in ``stats``):
        a block that declines pays a few tokens' bound, not all of them (the bound and the
        sort cost up to 85% of the full scan at d_model 128)."""
        tokens, rows, _ = y_rows.shape
        n = prune_policy.PROBE_TOKENS
        if tokens <= 2 * n:
            return True
        pick = torch.linspace(0, tokens - 1, n, device=y_rows.device).long()
        prefix = self._prefix(y_rows[pick], y_tok[pick], 0)
        if prefix is None:
            return False
        relative = light_cut(prefix.counts, self.W.shape[1], self.strongest)[1]
        if relative < prune_policy.WIN:
            return True
        self._count(prefix.reach, prefix.unknown)
        return False

    def _count(self, reach: Int[Tensor, "tokens rows"], unknown: Bool[Tensor, "tokens rows"]):
        """Record the rows' bound counts (``PruneStats.bound_fraction``)."""
        self.stats.tried += reach.numel()
        self.stats.bound_candidates += int(reach.masked_fill(unknown, self.W.shape[1]).sum())

    def _prefix(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        y_tok: Float[Tensor, "tokens d_model"],
        p: int,
    ) -> _Prefix | None:
        """Steps 1–2a of the module docstring for a basis of ``p`` directions; None when a
        token's z is not finite."""
        # 1. L_r: the k-th largest exact new value among the token's 2k strongest features
        z = torch.addmm(self.b, y_tok, self.W)
        if not bool(torch.isfinite(z).all()):
            return None
        top_z = z.topk(self.reach, dim=-1)  # largest first
        first = top_z.indices[:, : self.strongest]
        floor = self._exact(y_rows, first).topk(self.k, dim=-1, sorted=False).values.amin(-1)
        delta = y_rows - y_tok[:, None, :]
        delta_sq = delta.square().sum(-1)
        threshold = floor - self.margin(y_tok.norm(dim=-1), delta_sq.sqrt(), p)
        broken = ~torch.isfinite(threshold)
        # 2a. Cauchy–Schwarz: z_m + ‖δ_r‖ ‖w_m‖ ≥ θ_r needs z_m ≥ θ_r - ‖δ_r‖ max ‖w‖
        cut = threshold - delta_sq.sqrt() * (math.sqrt(1 + self.eta(0)) * self.w_max)
        below = torch.searchsorted(top_z.values.flip(-1), cut.nan_to_num(0), side="left")
        reach = self.reach - below  # how many of the token's features reach row r's θ_r
        unknown = (reach >= self.reach) | broken
        counts = reach.to(torch.float32).masked_fill(unknown, torch.inf)
        return _Prefix(
            z, top_z.indices, first, delta, delta_sq, threshold, broken, reach, unknown, counts
        )

    def _prune(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        y_tok: Float[Tensor, "tokens d_model"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae"],
        out: Perturbed | None,
        low_rank: bool,
    ) -> Perturbed | None:
        """Steps 1–4 of the module docstring; None where the full scan pays better."""
        tokens, rows, _ = y_rows.shape
        d_sae = self.W.shape[1]
        scan = buffer[: tokens * rows].view(tokens, rows, d_sae)
        p = self.rank if low_rank else 0
        prefix = self._prefix(y_rows, y_tok, p)
        if prefix is None:
            return None
        z, order, first, delta, delta_sq, threshold, broken, _, _, counts = prefix
        cut, relative = light_cut(counts, d_sae, self.strongest)
        prefix_pays = "prefix" in self.bounds and relative < prune_policy.WIN
        if prefix_pays or not low_rank or "low_rank" not in self.bounds:
            self._count(prefix.reach, prefix.unknown)
            if not prefix_pays:
                return None
            features = order[:, : max(self.strongest, int(cut))]
            return self._finish(y_rows, out_idx, features, threshold, counts > cut, buffer, out)

        # 2b. the low-rank bound on every feature (``jsae.prune_lowrank``)
        estimate, found = self.low_rank.candidates(
            z, first, delta, delta_sq, threshold, broken, scan
        )
        self._count(estimate, broken)
        if found is None:
            return None
        features, heavy = found
        return self._finish(y_rows, out_idx, features, threshold, heavy, buffer, out)

    def _finish(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        out_idx: Int[Tensor, "tokens n"],
        features: Int[Tensor, "tokens c"],
        threshold: Float[Tensor, "tokens rows"],
        heavy: Bool[Tensor, "tokens rows"],
        buffer: Float[Tensor, "tokens_x_rows d_sae"],
        out: Perturbed | None,
    ) -> Perturbed:
        """3–4: the candidates' exact values, their top k, the certificate, and the full scan
        of the heavy rows and of those whose certificate fails."""
        (tokens, rows, _), (d_sae, k) = y_rows.shape, (self.W.shape[1], self.k)
        columns, n = features.shape[1], out_idx.shape[1]
        values = self._exact(y_rows, features, space=buffer.view(-1))
        top = values.topk(k, dim=-1, sorted=False)
        place = torch.full((tokens, d_sae), -1, dtype=torch.long, device=features.device)
        place.scatter_(
            1, features, torch.arange(columns, device=features.device).expand_as(features)
        )
        where = place.gather(1, out_idx)
        new_pre = values.gather(-1, where.clamp_min(0)[:, None, :].expand(tokens, rows, n))
        missing = where < 0  # a tracked feature that is no candidate: below the k-th for sure
        if bool(missing.any()):
            new_pre = torch.where(missing[:, None, :], self._exact(y_rows, out_idx), new_pre)
        top_features = features[:, None, :].expand(tokens, rows, columns).gather(-1, top.indices)
        certified = (top.values.amin(-1) >= threshold) & ~heavy
        del values, place
        result = read_tracked(new_pre, top.values, top_features, out_idx, out)
        redo = (~certified).nonzero(as_tuple=True)
        n_redo, n_heavy = len(redo[0]), int(heavy.sum())
        st = self.stats
        st.pruned_blocks += 1
        st.heavy_rows += n_heavy
        st.fallback_rows += n_redo - n_heavy
        st.pruned_rows += tokens * rows - n_redo
        st.computed += tokens * rows * columns + n_redo * d_sae
        if n_redo:
            again = reselect_full(
                self._scan_rows(y_rows[redo], buffer)[:, None, :], out_idx[redo[0]], k
            )
            for part, value in zip(result, again, strict=True):
                part[redo] = value[:, 0]
        return result

    def _scan_rows(
        self, rows: Float[Tensor, "n d_model"], buffer: Float[Tensor, "m d_sae"]
    ) -> Float[Tensor, "n d_sae"]:
        """The full scan of a few rows, padded to ``FULL_ROWS`` rows: MKL's sgemm takes
        another path for fewer than 8 rows, which rounds differently from the block's full
        scan; with as many rows each row's products are the full scan's, bit for bit."""
        n = len(rows)
        if n < FULL_ROWS:
            rows = torch.cat([rows, rows[:1].expand(FULL_ROWS - n, -1)])
        out = buffer[: len(rows)] if len(buffer) >= len(rows) else None
        return torch.addmm(self.b, rows, self.W, out=out)[:n]

    def _full(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        out_idx: Int[Tensor, "tokens n"],
        scan: Float[Tensor, "tokens rows d_sae"],
        out: Perturbed | None,
    ) -> Perturbed:
        tokens, rows, d_sae = scan.shape
        self.stats.computed += scan.numel()
        flat = scan.view(tokens * rows, d_sae)
        sae_pre = torch.addmm(self.b, y_rows.reshape(tokens * rows, -1), self.W, out=flat)
        return reselect_full(sae_pre.view(tokens, rows, d_sae), out_idx, self.k, out)
