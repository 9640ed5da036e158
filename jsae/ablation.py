"""The causal-sparsity ablation engine: every (out_feature, in_feature) connection at once.

For each token and each active input feature i, the MLP input is perturbed along the input
SAE's decoder direction, x' = x - s * W_dec_in[i], with s set by the mode:

* ``unit``: s = 1 (the research notebook's choice),
* ``zero``: s = a_i, which removes the feature entirely,
* ``scale``: s = a user-chosen constant.

The perturbed MLP output is encoded by the output SAE *with* top-k re-selection (an output
feature that leaves the top k reads 0, as in the notebook), and diff = out_act' - out_act
is taken for every output feature j active on the unperturbed token. The first-order
prediction of that diff is -s * J[j, i].

The unperturbed pass runs once per chunk of tokens; the k_in perturbed rows of each token then
run through the MLP and the output SAE in blocks of rows sized by the memory budget, each
block's [rows, d_sae] output-SAE pre-activations written by one fused addmm into a buffer
every block reuses, scanned once by ``torch.topk``, and reduced to the k_out values kept.
Since pre(x') = pre(x) - s * (W_dec_in @ W_in)[i], the perturbed MLP pre-activations come
from the sandwich's precomputed product instead of a second W_in matmul. ε plays no
part here: ``split`` divides the connections into important (|J| > ε) and unimportant
(|J| <= ε) afterwards, so changing ε never recomputes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.errors import InputError
from jsae.finite import check_finite_activations
from jsae.pair import JSAEPair
from jsae.prompt import Prompt, first_ablated, mlp_inputs, tokenize
from jsae.sandwich import Perturbed, Sandwich, SandwichOutput
from jsae.table import DEFAULT_EPS, Connections, check_eps, connections_table, split

MODES = ("unit", "zero", "scale")
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
"""The largest scale the engine accepts: it computes in float32."""

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(tokens_done, tokens_total)`` after each chunk."""


@dataclass(frozen=True)
class AblationConfig:
    """How to perturb, and how much memory a chunk of tokens may use.

    Args:
        mode: ``"unit"`` (s = 1), ``"zero"`` (s = a_i) or ``"scale"`` (s = ``scale``).
        scale: the perturbation size s in ``"scale"`` mode; ignored otherwise.
        include_bos: also ablate position 0 when it is the BOS token (off, as the notebook).
        memory_budget: bytes of working memory a chunk of tokens may take (about 1 GiB).
    """

    mode: str = "unit"
    scale: float = 1.0
    include_bos: bool = False
    memory_budget: int = 1 << 30

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"Mode must be one of {', '.join(MODES)}; got {self.mode!r}.")
        if self.mode == "scale":
            if isinstance(self.scale, bool) or not (
                isinstance(self.scale, int | float) and abs(self.scale) <= FLOAT32_MAX
            ):
                raise InputError(
                    f"The scale must be a finite number within float32's range "
                    f"(±{FLOAT32_MAX:.4g}), got {self.scale!r}."
                )
            if self.scale == 0:
                raise InputError(
                    "The scale must not be 0: a zero step moves no input feature, so nothing "
                    "would move and the ratio would mean nothing."
                )
        if (
            isinstance(self.memory_budget, bool)
            or not isinstance(self.memory_budget, int)
            or self.memory_budget <= 0
        ):
            raise InputError(
                f"The memory budget must be a positive whole number of bytes, got "
                f"{self.memory_budget!r}."
            )

    def perturbation(self, in_act: Float[Tensor, "tokens k_in"]) -> Float[Tensor, "tokens k_in"]:
        """The step s along each active input feature's decoder direction."""
        if self.mode == "zero":
            return in_act
        s = 1.0 if self.mode == "unit" else float(self.scale)
        return torch.full_like(in_act, s)


ROW_BLOCK_BYTES = 128 << 20
"""Working memory of one block of perturbed rows, at most (the memory budget caps it too).

At the research shapes (d_sae 16384) that is about 1500 rows, some 18 blocks for 858 tokens:
enough rows for the matmuls to run at full speed and few enough blocks that the per-operation
cost stays small (each operation is a parallel region, and on a busy machine each one waits
for its slowest thread), while the block's output-SAE pre-activations, one buffer that every
block reuses, stay far below the budget."""

CHUNK_TOKENS = 256
"""Tokens whose unperturbed pass (input and output SAE encodes, Jacobian) runs as one batch:
enough rows for the encoder matmuls to run at full speed."""


def _row_bytes(pair: JSAEPair, d_model: int, d_mlp: int) -> int:
    """Bytes one perturbed row takes in flight: MLP pre-activations and activations, MLP
    output, the output SAE's pre-activations of all d_sae features, top-k values, indices and
    the k_out gathered results."""
    return 4 * (2 * d_mlp + d_model + pair.d_sae_out) + 4 * 8 * pair.k_out


def _token_bytes(pair: JSAEPair, d_model: int, d_mlp: int) -> int:
    """Bytes one token of a chunk holds: both SAEs' pre-activations while encoding, the MLP's
    pre-activations, act_fn' and output, and the token's k_in x k_out results."""
    return 4 * (
        pair.d_sae_in + pair.d_sae_out + 4 * d_mlp + 3 * d_model + 6 * pair.k_in * pair.k_out
    )


def rows_per_block(pair: JSAEPair, d_model: int, d_mlp: int, memory_budget: int) -> int:
    """How many perturbed rows (token, active input feature) one block computes at once:
    half the memory budget at most, and whole tokens' k_in rows where one token fits."""
    budget = min(memory_budget // 2, ROW_BLOCK_BYTES)
    rows = max(1, budget // _row_bytes(pair, d_model, d_mlp))
    return rows - rows % pair.k_in if rows >= pair.k_in else rows


def tokens_per_chunk(pair: JSAEPair, d_model: int, d_mlp: int, memory_budget: int) -> int:
    """How many tokens' perturbations fit into ``memory_budget`` bytes of float32 work.

    A chunk's unperturbed pass runs as one batch in what the block of rows leaves of the
    budget, then its tokens' k_in perturbations each run in blocks of ``rows_per_block``
    rows; at least one token, at most CHUNK_TOKENS.
    """
    rows = rows_per_block(pair, d_model, d_mlp, memory_budget)
    left = memory_budget - rows * _row_bytes(pair, d_model, d_mlp)
    return max(1, min(CHUNK_TOKENS, left // _token_bytes(pair, d_model, d_mlp)))


@dataclass
class Chunk:
    """One chunk of tokens' results: the unperturbed pass's active features and, per
    (token, in rank, out rank), the Jacobian entry and what the perturbation did."""

    in_idx: Int[Tensor, "tokens k_in"]
    out_idx: Int[Tensor, "tokens k_out"]
    in_act: Float[Tensor, "tokens k_in"]
    out_act: Float[Tensor, "tokens k_out"]
    margin: Float[Tensor, "tokens k_out"]
    jacobian: Float[Tensor, "tokens k_in k_out"]
    predicted: Float[Tensor, "tokens k_in k_out"]
    diff: Float[Tensor, "tokens k_in k_out"]
    pre_diff: Float[Tensor, "tokens k_in k_out"]
    exited: Bool[Tensor, "tokens k_in k_out"]
    entered: Int[Tensor, "tokens k_in"]


@torch.no_grad()
def ablate_chunk(
    sandwich: Sandwich,
    x: Float[Tensor, "tokens d_model"],
    config: AblationConfig,
    tokens_done: Callable[[int], None] | None = None,
) -> Chunk:
    """One chunk of tokens: the unperturbed pass and every single-connection perturbation."""
    base = sandwich(x)
    s = config.perturbation(base.in_act)
    after = _perturbed_out_acts(sandwich, base, s, config.memory_budget, tokens_done)
    diff = after.acts.sub_(base.out_act[:, None, :])
    pre_diff = after.pre.sub_(base.out_pre[:, None, :])
    jacobian = base.jacobian.transpose(1, 2)  # tokens k_in k_out
    predicted = -s[:, :, None] * jacobian
    margin = base.out_pre - base.runner_up[:, None]
    return Chunk(
        base.in_idx,
        base.out_idx,
        base.in_act,
        base.out_act,
        margin,
        jacobian,
        predicted,
        diff,
        pre_diff,
        after.exited,
        after.entered,
    )


def row_blocks(tokens: int, k_in: int, rows: int) -> Iterator[tuple[int, int, int, int]]:
    """Blocks of perturbed rows as (first token, end token, first rank, end rank): whole
    tokens when one token's k_in rows fit into a block, else pieces of one token."""
    if rows >= k_in:
        step = rows // k_in
        for t0 in range(0, tokens, step):
            yield t0, min(tokens, t0 + step), 0, k_in
    else:
        for t in range(tokens):
            for i0 in range(0, k_in, rows):
                yield t, t + 1, i0, min(k_in, i0 + rows)


def _perturbed_out_acts(
    sandwich: Sandwich,
    base: SandwichOutput,
    s: Float[Tensor, "tokens k_in"],
    memory_budget: int,
    tokens_done: Callable[[int], None] | None = None,
) -> Perturbed:
    """The output SAE's activations of each token's k_out active features after each of its
    k_in perturbations, with top-k re-selection (``Sandwich.perturbed_out_acts``: a feature
    that left the top k reads 0), their un-gated pre-activations, exits and entries.

    Runs in blocks of rows; a block keeps only its rows' k_out values, and its output-SAE
    pre-activations go into one [block, d_sae_out] buffer that every block reuses. Few,
    large operations per block: each is a parallel region, and on a busy machine every one
    of them waits for its slowest thread."""
    pair = sandwich.pair
    n, k_in = base.in_idx.shape
    d_model, d_mlp = sandwich.mlp.W_in.shape
    block = min(n * k_in, rows_per_block(pair, d_model, d_mlp, memory_budget))
    grid = (n, k_in, pair.k_out)
    out = Perturbed(
        acts=base.out_act.new_empty(grid),
        pre=base.out_act.new_empty(grid),
        exited=base.out_act.new_empty(grid, dtype=torch.bool),
        entered=base.out_idx.new_empty(n, k_in),
    )
    sae_pre = base.out_act.new_empty(block, pair.d_sae_out)
    for t0, t1, i0, i1 in row_blocks(n, k_in, block):
        t, i = slice(t0, t1), slice(i0, i1)
        sandwich.perturbed_out_acts(
            base.pre[t],
            base.in_idx[t, i],
            s[t, i],
            base.out_idx[t],
            buffer=sae_pre[: (t1 - t0) * (i1 - i0)],
            out=Perturbed(*(part[t, i] for part in out)),
        )
        if tokens_done is not None and i1 == k_in:
            tokens_done(t1)
    return out


def ablate_activations(
    sandwich: Sandwich,
    x: Float[Tensor, "pos d_model"],
    config: AblationConfig,
    positions: Int[Tensor, " pos"] | None = None,
    progress: ProgressCallback | None = None,
) -> Connections:
    """Run the engine over MLP inputs ``x`` in memory-bounded chunks of tokens.

    ``progress`` hears of every block of rows that completes tokens. The connections come
    back on the CPU, whatever device the sandwich runs on.
    """
    if positions is None:
        positions = torch.arange(len(x))
    d_model, d_mlp = sandwich.mlp.W_in.shape
    chunk = tokens_per_chunk(sandwich.pair, d_model, d_mlp, config.memory_budget)
    total = len(x)
    chunks = []
    for start in range(0, total, chunk):
        report = None
        if progress is not None:

            def report(done: int, start: int = start) -> None:
                progress(start + done, total)

        part = ablate_chunk(sandwich, x[start : start + chunk], config, report)
        check_finite_activations(
            (
                ("the MLP input", x[start : start + chunk]),
                ("the input SAE's activations", part.in_act),
                ("the output SAE's activations", part.out_act),
                ("the Jacobian", part.jacobian),
                ("the predicted change −s·J", part.predicted),
                ("the change after the perturbation", part.diff),
                ("the pre-activation change", part.pre_diff),
            ),
            f"at positions {int(positions[start])}..{int(positions[min(start + chunk, total) - 1])}",
        )
        chunks.append(part)
    return _connections(chunks, positions, sandwich.pair.k_in, sandwich.pair.k_out)


def _connections(chunks: list[Chunk], positions: Tensor, k_in: int, k_out: int) -> Connections:
    """The chunks' results as flat CPU tensors, one row per (position, in rank, out rank)."""
    if not chunks:
        empty = torch.empty(0)
        return Connections(*([empty] * len(Connections.__dataclass_fields__)))
    parts = {
        name: torch.cat([getattr(chunk, name) for chunk in chunks]).cpu()
        for name in Chunk.__dataclass_fields__
    }
    grid = (len(parts["in_idx"]), k_in, k_out)

    def per_in(name: str) -> Tensor:  # one value per (token, in rank), for every out rank
        return parts[name][:, :, None].expand(grid).reshape(-1)

    def per_out(name: str) -> Tensor:  # one value per (token, out rank), for every in rank
        return parts[name][:, None, :].expand(grid).reshape(-1)

    return Connections(
        position=positions.cpu()[:, None, None].expand(grid).reshape(-1),
        in_feature=per_in("in_idx"),
        out_feature=per_out("out_idx"),
        in_act=per_in("in_act"),
        out_act=per_out("out_act"),
        jacobian=parts["jacobian"].reshape(-1),
        predicted=parts["predicted"].reshape(-1),
        diff=parts["diff"].reshape(-1),
        pre_diff=parts["pre_diff"].reshape(-1),
        exited=parts["exited"].reshape(-1),
        entered=per_in("entered"),
        margin=per_out("margin"),
    )


@dataclass
class AblationResult:
    """One prompt's connections as a tidy table, plus what they were measured on.

    Args:
        table: one row per connection, columns ``jsae.table.COLUMNS`` (``important`` at
            ``eps``).
        prompt: the tokenized prompt (with how many tokens were dropped).
        n_tokens: how many positions were ablated (BOS excluded unless asked).
        eps: the ε that ``important`` was split at.
        config: the ablation settings used.
        layer: the block whose MLP the pair reads.
        kind: the pair's kind (``"jsae"`` or ``"plain"``).
        k_in, k_out: active input and output features per token.
    """

    table: pd.DataFrame
    prompt: Prompt
    n_tokens: int
    eps: float
    config: AblationConfig
    layer: int
    kind: str
    k_in: int
    k_out: int

    def with_eps(self, eps: float) -> AblationResult:
        """The same result re-split at another ε; nothing is recomputed."""
        return replace(self, table=split(self.table, eps), eps=check_eps(eps))


def ablate(
    model: HookedTransformer,
    pair: JSAEPair,
    text: str,
    eps: float = DEFAULT_EPS,
    config: AblationConfig | None = None,
    progress: ProgressCallback | None = None,
    max_tokens: int | None = None,
    sandwich: Sandwich | None = None,
    max_ablated: int | None = None,
) -> AblationResult:
    """Both experiments on one prompt: tokenize, read the MLP inputs, ablate, tabulate.

    ``max_tokens`` caps the tokenized prompt, BOS included (the hosted app's cap);
    ``max_ablated`` caps the positions ablated (``jsae ablate --max-tokens``): BOS, which
    is not ablated unless ``config.include_bos``, does not count."""
    config = config or AblationConfig()
    eps = check_eps(eps)
    pair.check_model(model)
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    if max_ablated is not None:
        if isinstance(max_ablated, bool) or max_ablated < 1:
            raise InputError(f"At least one token must be ablated, got {max_ablated!r}.")
        cap = max_ablated + int(bos is not None and not config.include_bos)
        max_tokens = cap if max_tokens is None else min(max_tokens, cap)
    prompt = tokenize(model, text, max_tokens=max_tokens)
    sandwich = sandwich or Sandwich(model, pair)
    x = mlp_inputs(model, prompt.tokens, pair.layer).to(sandwich.mlp.W_in.dtype)
    first = first_ablated(prompt.tokens, bos, config.include_bos)
    positions = torch.arange(first, len(prompt.tokens))
    connections = ablate_activations(sandwich, x[first:], config, positions, progress)
    table = connections_table(connections, prompt.strings, eps)
    return AblationResult(
        table, prompt, len(positions), eps, config, pair.layer, pair.kind, pair.k_in, pair.k_out
    )
