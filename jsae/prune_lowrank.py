"""The low-rank bound of ``jsae.prune``, for blocks with many rows per token (joint rows).

For any orthonormal U [d_model, p] (P⊥ = I - U Uᵀ) and a row's change δ_r of the output
SAE's input, Cauchy–Schwarz on the part of δ_r outside U gives

    z'_rm ≤ ub_rm = z_tm + (Uᵀδ_r) · (Uᵀw_m) + ‖P⊥δ_r‖ ‖P⊥w_m‖ + τ_r,

and ub_rm - θ_r = left_r · right_m, a product of inner size q = p + 3 (``bound_factors``):
the bound of every row and feature costs (p + 3) / d_model of the full scan's products.
U is each token's p principal directions of its rows' δ (``basis``), so that only what the
rows share least is left to Cauchy–Schwarz. It pays only where a token has many rows
(U's products with the encoder cost p rows' full scan). A block computes U before it can
tell whether the bound pays, so a loose block loses that; ``Sandwich`` uses it only with
``prune_joint`` (measured 0.48–1.10× the full scan's time, benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from jsae import prune_policy
from jsae.prune_policy import CHUNK_BYTES, CUT_QUANTILES, POWER_STEPS, SAMPLE, cost


class LowRank:
    """The low-rank bound on an encoder ``W`` [d_model, d_sae] with p = ``rank``; ``eta(p)``
    widens the residual norms for rounding (``jsae.prune.Pruner.eta``); every token's
    ``strongest`` features are candidates whatever the bound says."""

    def __init__(
        self,
        W: Float[Tensor, "d_model d_sae"],
        norm_sq: Float[Tensor, " d_sae"],
        rank: int,
        strongest: int,
        eta: Callable[[int], float],
    ):
        self.W, self.norm_sq, self.rank, self.strongest, self.eta = W, norm_sq, rank, strongest, eta

    def basis(
        self, delta: Float[Tensor, "tokens rows d_model"]
    ) -> Float[Tensor, "tokens d_model p"]:
        """Each token's ``rank`` principal directions of its rows' δ, about: a randomized
        range finder (Y = Σ_r δ_r ω_rᵀ, ω seeded Gaussian) and ``POWER_STEPS`` steps of
        subspace iteration, orthonormalised (any orthonormal U keeps the bound exact; a good
        one keeps it tight)."""
        tokens, rows, _ = delta.shape
        generator = torch.Generator(delta.device).manual_seed(0)
        omega = torch.randn(tokens, rows, self.rank, generator=generator, device=delta.device)
        y = torch.bmm(delta.transpose(1, 2), omega.to(delta.dtype))
        for _ in range(POWER_STEPS):
            q = torch.linalg.qr(y).Q
            y = torch.bmm(delta.transpose(1, 2), torch.bmm(delta, q))
        return torch.linalg.qr(y).Q

    def bound_factors(
        self,
        z: Float[Tensor, "tokens d_sae"],
        delta: Float[Tensor, "tokens rows d_model"],
        delta_sq: Float[Tensor, "tokens rows"],
        basis: Float[Tensor, "tokens d_model p"],
        threshold: Float[Tensor, "tokens rows"],
    ) -> tuple[Float[Tensor, "tokens rows q"], Float[Tensor, "tokens q d_sae"]]:
        """``left @ right = ub - θ`` for every row and feature, q = p + 3: the columns of
        ``left`` are Uᵀδ_r, ‖P⊥δ_r‖, 1 and -θ_r, the rows of ``right`` Uᵀw_m, ‖P⊥w_m‖, z_tm
        and 1, for U = ``basis`` (orthonormal columns); the residual norms
        √(‖a‖² − ‖Uᵀa‖²) are widened by √η ‖a‖ (``eta``)."""
        eta = self.eta(basis.shape[2])
        proj_d = torch.bmm(delta, basis)
        proj_w = torch.matmul(basis.transpose(1, 2), self.W)  # tokens p d_sae
        rest_d = (delta_sq - proj_d.square().sum(-1)).clamp_min(0).add_(eta * delta_sq).sqrt_()
        rest_w = (self.norm_sq - proj_w.square().sum(1)).clamp_min(0).add_(eta * self.norm_sq)
        left = torch.stack([rest_d, torch.ones_like(rest_d), -threshold], -1)
        right = torch.stack([rest_w.sqrt_(), z, torch.ones_like(z)], 1)
        return torch.cat([proj_d, left], -1), torch.cat([proj_w, right], 1)

    def candidates(
        self,
        z: Float[Tensor, "tokens d_sae"],
        first: Int[Tensor, "tokens s"],
        delta: Float[Tensor, "tokens rows d_model"],
        delta_sq: Float[Tensor, "tokens rows"],
        threshold: Float[Tensor, "tokens rows"],
        broken: Bool[Tensor, "tokens rows"],
        scan: Float[Tensor, "tokens rows d_sae"],
    ) -> tuple[
        Int[Tensor, "tokens rows"],
        tuple[Int[Tensor, "tokens c"], Bool[Tensor, "tokens rows"]] | None,
    ]:
        """Step 2b of ``jsae.prune``: the bound first on every ``SAMPLE``-th feature (the rows'
        estimated candidate counts, returned; the heavy rows; whether the block can pay),
        then on all of them; each token's candidates (the features whose bound reaches θ_r
        on any of its light rows, and its ``first``) and the heavy rows, or None where the
        full scan pays better. ``scan`` (the block's scan buffer) holds the bound."""
        tokens, rows, d_model = delta.shape
        d_sae, p = z.shape[1], self.rank
        basis = self.basis(delta.masked_fill(broken[..., None], 0))
        left, right = self.bound_factors(z, delta, delta_sq, basis, threshold)
        left.masked_fill_(broken[..., None], 0)
        sample = torch.bmm(left, right[:, :, ::SAMPLE]) >= 0
        estimate = (sample.sum(-1) * SAMPLE).clamp_max(d_sae)
        counts = estimate.to(torch.float32).masked_fill(broken, torch.inf)
        bound_cost = (p + 3) / d_model + prune_policy.SCAN_COST + p / rows
        heavy = self._sampled_cut(sample, counts, bound_cost)
        if heavy is None:
            return estimate, None
        n_heavy = int(heavy.sum())
        left[..., :-1].masked_fill_(heavy[..., None], 0)
        left[..., -1].masked_fill_(heavy, -torch.inf)  # a heavy row admits nothing
        union = self._union(left, right, scan)
        union.scatter_(1, first, True)
        columns = int(union.sum(-1).max())
        if not prune_policy.pays(tokens * rows, columns, n_heavy, d_sae):
            return estimate, None
        features = union.to(delta.dtype).topk(columns, dim=-1, sorted=False).indices
        return estimate, (features, heavy)

    def _union(
        self,
        left: Float[Tensor, "tokens rows q"],
        right: Float[Tensor, "tokens q d_sae"],
        scan: Float[Tensor, "tokens rows d_sae"],
    ) -> Bool[Tensor, "tokens d_sae"]:
        """Features whose bound reaches θ_r on any row of the token: max_r (left @ right) ≥ 0,
        a slice of features at a time (``CHUNK_BYTES``), each reduced while in cache."""
        tokens, rows, d_sae = scan.shape
        union = torch.empty(tokens, d_sae, dtype=torch.bool, device=scan.device)
        step = max(1, min(d_sae, CHUNK_BYTES // (4 * tokens * rows)))
        for f0 in range(0, d_sae, step):
            f = slice(f0, f0 + step)
            n = len(range(d_sae)[f])
            part = scan.view(-1)[: tokens * rows * n].view(tokens, rows, n)
            torch.bmm(left, right[:, :, f], out=part)
            union[:, f] = part.amax(1) >= 0
        return union

    def _sampled_cut(
        self,
        sample: Bool[Tensor, "tokens rows s"],
        counts: Float[Tensor, "tokens rows"],
        bound_cost: float,
    ) -> Bool[Tensor, "tokens rows"] | None:
        """The heavy rows of the low-rank bound: of the cuts at a few quantiles of the rows'
        sampled counts, the one whose estimated cost (the light rows' union, the heavy rows'
        full scan, the bound) is least; None when none beats the full scan."""
        tokens, rows, _ = sample.shape
        d_sae = self.W.shape[1]
        flat = counts.flatten().sort().values
        best, heavy = prune_policy.WIN, None
        for fraction in CUT_QUANTILES:
            cut = flat[min(len(flat) - 1, int(fraction * len(flat)))]
            if not bool(torch.isfinite(cut)):
                continue
            light = counts <= cut
            union = int((sample & light[..., None]).any(1).sum(-1).max()) * SAMPLE
            columns = max(self.strongest, union)
            value = cost(columns, d_sae, float((~light).float().mean()), bound_cost)
            if value < best:
                best, heavy = value, ~light
        return heavy
