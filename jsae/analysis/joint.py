"""Joint ablation: remove a whole set of an output feature's inputs at once, in orders.

The single-connection engine (``jsae.ablation``) moves one input feature at a time. Here, for
a token with active inputs I (steps s_i from the same ``AblationConfig`` mode) and an active
output feature j, a set S of j's inputs is removed together,

    x' = x - sum_{i in S} s_i W_dec_in[i],

and j's change diff_j(S) = out_act_j(x') - out_act_j(x) is read with top-k re-selection,
exactly as the single-connection engine reads it (``Sandwich.jointly_perturbed_out_acts``).
Its first-order prediction is -sum_{i in S} s_i J[j, i]; its additive prediction, the sum of
the single-connection diffs of S, is what the one-at-a-time test implicitly assumes.

Each *order* ranks j's k_in inputs, and its curve removes the first m of them together for
m = 0 .. k_in:

* ``jacobian``: |J[j, i]| ascending, what the Jacobian calls least important first;
* ``reverse``: |J[j, i]| descending;
* ``oracle``: the single-connection |diff_j({i})| ascending, the best a per-edge score could do;
* ``random``: a seeded random permutation of the token's inputs (shared by its output features).

Every set a split names is a prefix of one of them, so a new ε recomputes nothing: j's
unimportant set (|J| <= ε, n_U inputs) is the ``jacobian`` prefix of length n_U, the important
set the ``reverse`` prefix of length k_in - n_U, and the random set of the same size as the
unimportant one the ``random`` prefix of length n_U. (Equal |J| values tie-break by rank.)

Rows: m = 0 is the unperturbed token; m = k_in removes every active input, one row that serves
every j and order; the ``random`` rows serve all of a token's j. A token therefore takes
1 + (k_in - 1)(1 + 3 k_out) MLP rows against the single-connection engine's k_in: the curves
cost about 3 k_out times the one-at-a-time pass, each row an exact MLP and output-SAE run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from jsae.ablation import (
    AblationConfig,
    ProgressCallback,
    ablate_chunk,
    row_blocks,
    rows_per_block,
    tokens_per_chunk,
)
from jsae.finite import check_finite_activations
from jsae.sandwich import Perturbed, Sandwich

ORDERS = ("jacobian", "reverse", "oracle", "random")
"""The removal orders; the first three rank each output feature's inputs on their own."""
PER_FEATURE_ORDERS = ORDERS[:3]
JOINT_SEED = 0
"""Seed of the random order's permutations (one per token, drawn in token order)."""


@dataclass
class JointCurves:
    """Every token's output features with their inputs removed m at a time, in every order.

    Args:
        positions: the ablated tokens' positions.
        in_idx, in_act, steps: the active input features, their activations and the step s_i
            each is removed with; out_idx, out_act: the active output features.
        jacobian: J[t, j, i] (output rank j, input rank i).
        single_diff: diff_j({i}), the single-connection engine's diff.
        order: order[t, o, j, p], the input rank removed p-th by order ``ORDERS[o]``.
        act: j's activation with the first m inputs of order o removed, [t, o, j, m].
        exited: whether j left the top k there.
    """

    positions: Int[Tensor, " tokens"]
    in_idx: Int[Tensor, "tokens k_in"]
    in_act: Float[Tensor, "tokens k_in"]
    steps: Float[Tensor, "tokens k_in"]
    out_idx: Int[Tensor, "tokens k_out"]
    out_act: Float[Tensor, "tokens k_out"]
    jacobian: Float[Tensor, "tokens k_out k_in"]
    single_diff: Float[Tensor, "tokens k_out k_in"]
    order: Int[Tensor, "tokens orders k_out k_in"]
    act: Float[Tensor, "tokens orders k_out m"]
    exited: Bool[Tensor, "tokens orders k_out m"]

    @property
    def n_tokens(self) -> int:
        return len(self.positions)

    @property
    def k_in(self) -> int:
        return self.in_idx.shape[1]

    @property
    def k_out(self) -> int:
        return self.out_idx.shape[1]

    @property
    def diff(self) -> Float[Tensor, "tokens orders k_out m"]:
        """j's change with the first m inputs removed (0 at m = 0)."""
        return self.act - self.out_act[:, None, :, None]

    def _cumulative(self, per_input: Tensor) -> Tensor:
        """sum over the first m inputs of each order of ``per_input[t, j, i]``, m = 0..k_in."""
        ordered = torch.gather(per_input[:, None].expand(-1, len(ORDERS), -1, -1), -1, self.order)
        zero = ordered.new_zeros(*ordered.shape[:-1], 1)
        return torch.cat([zero, ordered.cumsum(-1)], -1)

    @property
    def predicted(self) -> Float[Tensor, "tokens orders k_out m"]:
        """The first-order prediction -sum s_i J[j, i] over the removed inputs."""
        return self._cumulative(-self.steps[:, None, :] * self.jacobian)

    @property
    def additive(self) -> Float[Tensor, "tokens orders k_out m"]:
        """The sum of the removed inputs' single-connection diffs."""
        return self._cumulative(self.single_diff)

    @classmethod
    def cat(cls, parts: list[JointCurves]) -> JointCurves:
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))


def removal_orders(
    jacobian: Float[Tensor, "tokens k_out k_in"],
    single_diff: Float[Tensor, "tokens k_out k_in"],
    generator: torch.Generator,
) -> Int[Tensor, "tokens orders k_out k_in"]:
    """Each order of ``ORDERS`` as input ranks, stably sorted (ties keep rank order)."""
    tokens, k_out, k_in = jacobian.shape
    magnitude = jacobian.abs()
    random = torch.rand(tokens, k_in, generator=generator).to(jacobian.device)
    orders = (
        magnitude.argsort(dim=-1, stable=True),
        magnitude.argsort(dim=-1, descending=True, stable=True),
        single_diff.abs().argsort(dim=-1, stable=True),
        random.argsort(dim=-1, stable=True)[:, None, :].expand(tokens, k_out, k_in),
    )
    return torch.stack(orders, 1)


def _removal_steps(
    order: Int[Tensor, "tokens orders k_out k_in"], steps: Float[Tensor, "tokens k_in"]
) -> Float[Tensor, "tokens rows k_in"]:
    """The steps of every row a token runs: the random order's m = 1..k_in-1 (shared by all
    j), then each per-feature order's (j, m) for m = 1..k_in-1, then every input removed."""
    tokens, _, k_out, k_in = order.shape
    place = order.argsort(-1)  # place[..., i]: when input i is removed
    m = torch.arange(1, k_in, device=order.device)
    random = place[:, -1, 0, None, :] < m[None, :, None]  # tokens m k_in
    per_feature = place[:, : len(PER_FEATURE_ORDERS), :, None, :] < m[:, None]
    every = torch.ones(tokens, 1, k_in, dtype=torch.bool, device=order.device)
    masks = torch.cat([random, per_feature.reshape(tokens, -1, k_in), every], 1)
    return masks * steps[:, None, :]


def _chunk_curves(
    sandwich: Sandwich,
    x: Float[Tensor, "tokens d_model"],
    positions: Int[Tensor, " tokens"],
    config: AblationConfig,
    generator: torch.Generator,
) -> JointCurves:
    single = ablate_chunk(sandwich, x, config)
    jacobian = single.jacobian.transpose(1, 2)  # tokens k_out k_in
    single_diff = single.diff.transpose(1, 2)
    steps = config.perturbation(single.in_act)
    order = removal_orders(jacobian, single_diff, generator)
    row_steps = _removal_steps(order, steps)
    tokens, rows, k_in = row_steps.shape
    k_out = single.out_idx.shape[1]

    # 1. Every row through the MLP and the output SAE, in blocks within the memory budget
    pre = sandwich.mlp.pre(x)
    d_model, d_mlp = sandwich.mlp.W_in.shape
    prune = sandwich.prunes(joint=True)
    budget = config.memory_budget
    block = min(tokens * rows, rows_per_block(sandwich.pair, d_model, d_mlp, budget, prune))
    out = Perturbed(
        acts=x.new_empty(tokens, rows, k_out),
        pre=x.new_empty(tokens, rows, k_out),
        exited=x.new_empty(tokens, rows, k_out, dtype=torch.bool),
        entered=single.out_idx.new_empty(tokens, rows),
    )
    buffer = x.new_empty(block, sandwich.pair.d_sae_out)
    for t0, t1, r0, r1 in row_blocks(tokens, rows, block):
        t, r = slice(t0, t1), slice(r0, r1)
        sandwich.jointly_perturbed_out_acts(
            pre[t],
            single.in_idx[t],
            row_steps[t, r],
            single.out_idx[t],
            buffer=buffer[: (t1 - t0) * (r1 - r0)],
            out=Perturbed(*(part[t, r] for part in out)),
        )

    # 2. Each (order, j, m) read off its row: j's own rows for the per-feature orders
    def curves(values: Tensor) -> Tensor:
        per = len(PER_FEATURE_ORDERS)
        result = values.new_empty(tokens, len(ORDERS), k_out, k_in + 1)
        own = values[:, k_in - 1 : -1].reshape(tokens, per, k_out, k_in - 1, k_out)
        result[:, :per, :, 1:k_in] = own.diagonal(dim1=2, dim2=4).transpose(-1, -2)
        result[:, per, :, 1:k_in] = values[:, : k_in - 1].transpose(1, 2)
        result[..., k_in] = values[:, -1, None, :]
        return result

    act = curves(out.acts)
    act[..., 0] = single.out_act[:, None, :]
    exited = curves(out.exited)
    exited[..., 0] = False
    return JointCurves(
        positions,
        single.in_idx,
        single.in_act,
        steps,
        single.out_idx,
        single.out_act,
        jacobian,
        single_diff,
        order,
        act,
        exited,
    )


def joint_token_bytes(k_in: int, k_out: int) -> int:
    """Bytes one token's rows hold besides the MLP blocks: steps, and per row every tracked
    feature's activation, pre-activation and exit, and the curves read off them."""
    rows = 1 + (k_in - 1) * (1 + len(PER_FEATURE_ORDERS) * k_out)
    return 4 * rows * (k_in + 3 * k_out) + 12 * len(ORDERS) * k_out * (k_in + 1)


@torch.no_grad()
def joint_curves(
    sandwich: Sandwich,
    x: Float[Tensor, "tokens d_model"],
    config: AblationConfig,
    positions: Int[Tensor, " tokens"] | None = None,
    seed: int = JOINT_SEED,
    progress: ProgressCallback | None = None,
) -> JointCurves:
    """The curves of every order for MLP inputs ``x``, in memory-bounded chunks of tokens.

    The random order draws one permutation per token from ``seed``, in token order, so the
    result does not depend on the chunk size. Comes back on the CPU."""
    if positions is None:
        positions = torch.arange(len(x))
    pair = sandwich.pair
    d_model, d_mlp = sandwich.mlp.W_in.shape
    chunk = min(
        tokens_per_chunk(pair, d_model, d_mlp, config.memory_budget, sandwich.prunes(joint=True)),
        max(1, config.memory_budget // 2 // joint_token_bytes(pair.k_in, pair.k_out)),
    )
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, len(x), chunk):
        part = _chunk_curves(
            sandwich, x[start : start + chunk], positions[start : start + chunk], config, generator
        )
        check_finite_activations(
            (("the jointly perturbed output activations", part.act),),
            f"at positions {int(part.positions[0])}..{int(part.positions[-1])}",
        )
        parts.append(JointCurves(*(getattr(part, f.name).cpu() for f in fields(JointCurves))))
        if progress is not None:
            progress(min(start + chunk, len(x)), len(x))
    if not parts:
        return _empty(pair.k_in, pair.k_out)
    return JointCurves.cat(parts)


def _empty(k_in: int, k_out: int) -> JointCurves:
    def f(*shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.empty(0, *shape, dtype=dtype)

    n = len(ORDERS)
    return JointCurves(
        f(dtype=torch.long),
        f(k_in, dtype=torch.long),
        f(k_in),
        f(k_in),
        f(k_out, dtype=torch.long),
        f(k_out),
        f(k_out, k_in),
        f(k_out, k_in),
        f(n, k_out, k_in, dtype=torch.long),
        f(n, k_out, k_in + 1),
        f(n, k_out, k_in + 1, dtype=torch.bool),
    )
