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
   search). A row whose prefix is longer than ``HEAVY_FRACTION`` of d_sae is *heavy*. If the
   light rows' longest prefix pays (``pays``), it holds the candidates;
3. **low-rank bound** (with a basis): ub_rm - θ_r for every feature as one batched product
   of inner size p + 3, first on every ``SAMPLE``-th feature (which rows are heavy; can the
   block pay at all?), then on all of them: a token's candidates are the features whose
   bound reaches θ_r on any of its light rows (a max over the rows), and its 2k strongest;
4. the candidates' exact z'_rm (one gathered, batched product), their top k, and the
   **certificate** per row: the k-th value found is at least θ_r, so at least every
   non-candidate's bound. Heavy rows, and rows whose certificate fails (NaN, or a rounding
   tie at θ_r), take the full scan.

A block where no step pays takes the full scan, and ``Backoff`` skips the next tries of that
kind for a while. The top k found is the row's top k and its values are the same products
(to float rounding), so ``acts``, ``pre``, ``exited`` and ``entered`` equal the full scan's.

The basis U: none for single-connection rows (k_in rows per token: a p-dimensional basis
would cost as much as the rows). For rows that move several inputs of a token together
(many rows per token), U spans the first-order changes of y along each input's direction,
(v_i ⊙ act'(pre_t)) W_out: every row's δ is a combination of them plus curvature, so only
the curvature is left to Cauchy–Schwarz.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import TopKSAE
from torch import Tensor

from jsae.pair import JSAEPair
from jsae.prune_policy import SCAN_COST, Backoff, PruneStats, pays
from jsae.reselect import Perturbed, read_tracked, reselect_full

STRONGEST = 2
"""Step 1 computes the exact new values of the token's STRONGEST * k features by z_t."""
HEAVY_FRACTION = 1 / 8
"""A row whose own bound admits more than this fraction of d_sae features takes the full
scan: a light row's candidates are a few percent of d_sae when the bound holds at all."""
SAMPLE = 16
"""The low-rank bound first runs on every SAMPLE-th feature: which rows are heavy, and
whether the block's candidates can pay at all."""
BOUNDS = ("prefix", "low_rank")
"""The candidate sets a Pruner tries, in order (``Pruner.bounds``; benchmarks and tests
narrow it to measure or exercise one)."""
BASIS_ROWS = 16
"""A block uses the basis U (p directions) only with at least BASIS_ROWS * p rows per token
(U's products with the encoder cost p rows' full scan) and p + 3 ≤ d_model / 4 (the bound's
inner size, against the full scan's d_model)."""


def prune_row_bytes(pair: JSAEPair, d_model: int) -> int:
    """Bytes pruning adds per row of a block to the full scan's: δ, the bound's left factor
    and sampled values, step 1's exact values; each token's z, sorted features, union and
    map (28 d_sae bytes, shared by its k_in rows at least); the low-rank bound's right factor
    (shared by BASIS_ROWS p rows at least). The candidates' exact values and gathered encoder
    columns go into the block's scan buffer."""
    d_sae, k_in, k_out = pair.d_sae_out, pair.k_in, pair.k_out
    per_row = 4 * d_model + 5 * d_sae // SAMPLE + 4 * (k_in + 3) + 12 * STRONGEST * k_out
    shared = 28 * d_sae // k_in + 8 * (k_in + 3) * d_sae // (BASIS_ROWS * k_in)
    return per_row + shared


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
        self.unit = torch.finfo(self.W.dtype).eps / 2
        self.stats = PruneStats()
        self.backoff = {False: Backoff(), True: Backoff()}  # Cauchy–Schwarz, low-rank
        self.bounds = BOUNDS

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

    def bound_factors(
        self,
        z: Float[Tensor, "tokens d_sae"],
        delta: Float[Tensor, "tokens rows d_model"],
        delta_sq: Float[Tensor, "tokens rows"],
        basis: Float[Tensor, "tokens p d_model"],
        threshold: Float[Tensor, "tokens rows"],
    ) -> tuple[Float[Tensor, "tokens rows q"], Float[Tensor, "tokens q d_sae"]]:
        """``left @ right = ub - θ`` for every row and feature, q = p + 3: the columns of
        ``left`` are Uᵀδ_r, ‖P⊥δ_r‖, 1 and -θ_r, the rows of ``right`` Uᵀw_m, ‖P⊥w_m‖, z_tm
        and 1. U is the QR basis of ``basis``; the residual norms √(‖a‖² − ‖Uᵀa‖²) are
        widened by √η ‖a‖ (``eta``)."""
        eta = self.eta(basis.shape[1])
        q = torch.linalg.qr(basis.transpose(1, 2)).Q  # tokens d_model p, orthonormal
        proj_d = torch.bmm(delta, q)
        proj_w = torch.matmul(q.transpose(1, 2), self.W)  # tokens p d_sae
        rest_d = (delta_sq - proj_d.square().sum(-1)).clamp_min(0).add_(eta * delta_sq).sqrt_()
        rest_w = (self.norm_sq - proj_w.square().sum(1)).clamp_min(0).add_(eta * self.norm_sq)
        left = torch.stack([rest_d, torch.ones_like(rest_d), -threshold], -1)
        right = torch.stack([rest_w.sqrt_(), z, torch.ones_like(z)], 1)
        return torch.cat([proj_d, left], -1), torch.cat([proj_w, right], 1)

    def reselect(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        y_tok: Float[Tensor, "tokens d_model"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae"] | None = None,
        out: Perturbed | None = None,
        basis: Float[Tensor, "tokens p d_model"] | None = None,
    ) -> Perturbed:
        """The rows' top-k re-selection read at ``out_idx``, as ``reselect_full`` gives it
        on ``y_rows @ W_enc + b_enc``, from as few exact pre-activations as a bound
        certifies. ``basis`` spans the directions δ mostly lies in (None: Cauchy–Schwarz)."""
        tokens, rows, _ = y_rows.shape
        d_sae = self.W.shape[1]
        if buffer is None:
            buffer = y_rows.new_empty(tokens * rows, d_sae)
        scan = buffer[: tokens * rows].view(tokens, rows, d_sae)
        st = self.stats
        st.blocks, st.rows = st.blocks + 1, st.rows + tokens * rows
        st.features += scan.numel()
        backoff = self.backoff[basis is not None]
        if self.reach <= self.strongest or backoff.skip():
            return self._full(y_rows, out_idx, scan, out)
        st.tried += tokens * rows
        result = self._prune(y_rows, y_tok, out_idx, buffer, out, basis)
        backoff.record(paid=result is not None)
        return self._full(y_rows, out_idx, scan, out) if result is None else result

    def _prune(
        self,
        y_rows: Float[Tensor, "tokens rows d_model"],
        y_tok: Float[Tensor, "tokens d_model"],
        out_idx: Int[Tensor, "tokens n"],
        buffer: Float[Tensor, "tokens_x_rows d_sae"],
        out: Perturbed | None,
        basis: Float[Tensor, "tokens p d_model"] | None,
    ) -> Perturbed | None:
        """Steps 1–4 of the module docstring; None where the full scan pays better."""
        tokens, rows, d_model = y_rows.shape
        d_sae, k, st = self.W.shape[1], self.k, self.stats
        scan = buffer[: tokens * rows].view(tokens, rows, d_sae)
        # 1. L_r: the k-th largest exact new value among the token's 2k strongest features
        z = torch.addmm(self.b, y_tok, self.W)
        if not bool(torch.isfinite(z).all()):
            return None
        top_z = z.topk(self.reach, dim=-1)  # largest first
        first = top_z.indices[:, : self.strongest]
        floor = self._exact(y_rows, first).topk(k, dim=-1, sorted=False).values.amin(-1)
        delta = y_rows - y_tok[:, None, :]
        delta_sq = delta.square().sum(-1)
        p = 0 if basis is None else basis.shape[1]
        threshold = floor - self.margin(y_tok.norm(dim=-1), delta_sq.sqrt(), p)
        broken = ~torch.isfinite(threshold)

        # 2a. Cauchy–Schwarz: z_m + ‖δ_r‖ ‖w_m‖ ≥ θ_r needs z_m ≥ θ_r - ‖δ_r‖ max ‖w‖
        cut = threshold - delta_sq.sqrt() * (math.sqrt(1 + self.eta(0)) * self.w_max)
        below = torch.searchsorted(top_z.values.flip(-1), cut.nan_to_num(0), side="left")
        reach = self.reach - below  # how many of the token's features reach row r's θ_r
        heavy = (reach >= self.reach) | broken
        prefix = max(self.strongest, int(reach.masked_fill(heavy, 0).max()))
        n_heavy = int(heavy.sum())
        if "prefix" in self.bounds and pays(tokens * rows, prefix, n_heavy, d_sae):
            st.bound_candidates += int(reach.masked_fill(heavy, d_sae).sum())
            features = top_z.indices[:, :prefix]
            return self._finish(y_rows, out_idx, features, threshold, heavy, buffer, out)
        if basis is None or rows < BASIS_ROWS * p or 4 * (p + 3) > d_model:
            st.bound_candidates += int(reach.masked_fill(heavy, d_sae).sum())
            return None

        # 2b. the low-rank bound on every feature, θ_r folded in: ub_rm - θ_r = left @ right
        left, right = self.bound_factors(z, delta, delta_sq, basis, threshold)
        left.masked_fill_(broken[..., None], 0)
        sample = torch.bmm(left, right[:, :, ::SAMPLE]) >= 0
        estimate = sample.sum(-1) * SAMPLE
        heavy = (estimate > HEAVY_FRACTION * d_sae) | broken
        n_heavy = int(heavy.sum())
        st.bound_candidates += int(estimate.clamp_max(d_sae).masked_fill(heavy, d_sae).sum())
        guess = int((sample & ~heavy[..., None]).any(1).sum(-1).max()) * SAMPLE
        bound_cost = (p + 3) / d_model + SCAN_COST
        if not pays(tokens * rows, guess, n_heavy, d_sae, bound_cost):
            return None
        left[..., :-1].masked_fill_(heavy[..., None], 0)
        left[..., -1].masked_fill_(heavy, -torch.inf)  # a heavy row admits nothing
        union = torch.bmm(left, right, out=scan).amax(1) >= 0
        union.scatter_(1, first, True)
        columns = int(union.sum(-1).max())
        if not pays(tokens * rows, columns, n_heavy, d_sae):
            return None
        features = union.to(y_rows.dtype).topk(columns, dim=-1, sorted=False).indices
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
            sae_pre = torch.addmm(self.b, y_rows[redo], self.W, out=buffer[:n_redo])
            again = reselect_full(sae_pre[:, None, :], out_idx[redo[0]], k)
            for part, value in zip(result, again, strict=True):
                part[redo] = value[:, 0]
        return result

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
