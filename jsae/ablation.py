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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.ablation_config import FLOAT32_MAX, MODES, AblationConfig, ProgressCallback
from jsae.errors import InputError
from jsae.finite import check_finite_activations
from jsae.pair import JSAEPair
from jsae.prompt import (
    Prompt,
    PromptInput,
    first_ablated,
    is_prompt_list,
    mlp_inputs,
    prompt_within,
)
from jsae.provenance import Provenance, prompt_record, prompt_sha256
from jsae.prune_policy import prune_row_bytes
from jsae.result import AblationBatch, AblationResult
from jsae.sandwich import Perturbed, Sandwich, SandwichOutput
from jsae.table import DEFAULT_EPS, Connections, check_eps, connections_table

__all__ = [
    "FLOAT32_MAX",
    "MODES",
    "AblationBatch",
    "AblationConfig",
    "AblationResult",
    "ProgressCallback",
    "ablate",
    "ablate_activations",
    "ablate_chunk",
    "row_blocks",
    "rows_per_block",
    "tokens_per_chunk",
]
"""The engine, and the settings and results ``ablate`` takes and returns (defined in
``jsae.ablation_config`` and ``jsae.result``)."""

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


def _row_bytes(pair: JSAEPair, d_model: int, d_mlp: int, prune: bool = False) -> int:
    """Bytes one perturbed row takes in flight: MLP pre-activations and activations, MLP
    output, the output SAE's pre-activations of all d_sae features, top-k values, indices and
    the k_out gathered results; and what pruning adds (``jsae.prune_policy.prune_row_bytes``)."""
    extra = prune_row_bytes(pair, d_model) if prune else 0
    return 4 * (2 * d_mlp + d_model + pair.d_sae_out) + 4 * 8 * pair.k_out + extra


def _token_bytes(pair: JSAEPair, d_model: int, d_mlp: int) -> int:
    """Bytes one token of a chunk holds: both SAEs' pre-activations while encoding, the MLP's
    pre-activations, act_fn' and output, and the token's k_in x k_out results."""
    return 4 * (
        pair.d_sae_in + pair.d_sae_out + 4 * d_mlp + 3 * d_model + 6 * pair.k_in * pair.k_out
    )


def rows_per_block(
    pair: JSAEPair, d_model: int, d_mlp: int, memory_budget: int, prune: bool = False
) -> int:
    """How many perturbed rows (token, active input feature) one block computes at once:
    half the memory budget at most, and whole tokens' k_in rows where one token fits.
    ``prune``: the sandwich prunes these rows' top-k re-selection (``Sandwich.prunes``)."""
    budget = min(memory_budget // 2, ROW_BLOCK_BYTES)
    rows = max(1, budget // _row_bytes(pair, d_model, d_mlp, prune))
    return rows - rows % pair.k_in if rows >= pair.k_in else rows


def tokens_per_chunk(
    pair: JSAEPair, d_model: int, d_mlp: int, memory_budget: int, prune: bool = False
) -> int:
    """How many tokens' perturbations fit into ``memory_budget`` bytes of float32 work.

    A chunk's unperturbed pass runs as one batch in what the block of rows leaves of the
    budget, then its tokens' k_in perturbations each run in blocks of ``rows_per_block``
    rows; at least one token, at most CHUNK_TOKENS.
    """
    rows = rows_per_block(pair, d_model, d_mlp, memory_budget, prune)
    left = memory_budget - rows * _row_bytes(pair, d_model, d_mlp, prune)
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
    prune = sandwich.prunes()
    block = min(n * k_in, rows_per_block(pair, d_model, d_mlp, memory_budget, prune))
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
    prune = sandwich.prunes()
    chunk = tokens_per_chunk(sandwich.pair, d_model, d_mlp, config.memory_budget, prune)
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


def ablate(
    model: HookedTransformer,
    pair: JSAEPair,
    text: PromptInput | Sequence[PromptInput],
    eps: float = DEFAULT_EPS,
    config: AblationConfig | None = None,
    progress: ProgressCallback | None = None,
    max_tokens: int | None = None,
    sandwich: Sandwich | None = None,
    max_ablated: int | None = None,
    device: str | torch.device | None = None,
) -> AblationResult | AblationBatch:
    """Both experiments on a prompt: tokenize, read the MLP inputs, ablate, tabulate.

    ``text`` is text (a str), token ids (a 1-D integer tensor or a list of ints, used as
    given: include the BOS yourself) or a list of those, which gives an ``AblationBatch``
    (one table with a ``prompt`` column; ``progress`` counts its tokens together).
    ``max_tokens`` caps the tokenized prompt, BOS included (the hosted app's cap);
    ``max_ablated`` caps the positions ablated (``jsae ablate --max-tokens``): BOS, which
    is not ablated unless ``config.include_bos``, does not count. ``device`` moves the model
    and the pair there first (in place, as ``model.to``); a pair in another dtype or on
    another device than the model's MLP is cast to it with a warning (``JSAEPair.fit_to``).
    """
    config = config or AblationConfig()
    eps = check_eps(eps)
    pair.check_model(model)
    batch = is_prompt_list(text)
    given = list(text) if batch else [text]  # type: ignore[arg-type]
    if not given:
        raise InputError("The list of prompts is empty: give at least one.")
    prompts = [
        prompt_within(model, value, config.include_bos, max_tokens, max_ablated) for value in given
    ]
    if device is not None:
        if sandwich is not None:
            raise InputError("Pass a device or a sandwich, not both: a sandwich has its device.")
        model.to(device)
        pair.to(device=device)
    sandwich = sandwich or Sandwich(model, pair)
    record = Provenance(
        layer=pair.layer,
        kind=pair.kind,
        eps=eps,
        mode=config.mode,
        step=config.step,
        include_bos=config.include_bos,
        prompt=prompt_record(text),
        prompt_sha256=prompt_sha256(prompt_record(text)),
        model_name=model.cfg.model_name,
        max_ablated=max_ablated,
        max_prompt_tokens=max_tokens,
    )
    if not batch:
        return _ablate_one(model, pair, prompts[0], eps, config, progress, sandwich, record)
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    counts = [len(p.tokens) - first_ablated(p.tokens, bos, config.include_bos) for p in prompts]
    results = []
    for n, (value, prompt) in enumerate(zip(given, prompts, strict=True)):
        report = None
        if progress is not None:

            def report(done: int, _: int, before: int = sum(counts[:n])) -> None:
                progress(before + done, sum(counts))

        one = record.replace(
            prompt=prompt_record(value), prompt_sha256=prompt_sha256(prompt_record(value))
        )
        results.append(_ablate_one(model, pair, prompt, eps, config, report, sandwich, one))
    return AblationBatch(tuple(results), record)


def _ablate_one(
    model: HookedTransformer,
    pair: JSAEPair,
    prompt: Prompt,
    eps: float,
    config: AblationConfig,
    progress: ProgressCallback | None,
    sandwich: Sandwich,
    record: Provenance,
) -> AblationResult:
    """One tokenized prompt through the engine, as a table."""
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    W_in = sandwich.mlp.W_in
    x = mlp_inputs(model, prompt.tokens, pair.layer).to(device=W_in.device, dtype=W_in.dtype)
    first = first_ablated(prompt.tokens, bos, config.include_bos)
    positions = torch.arange(first, len(prompt.tokens))
    connections = ablate_activations(sandwich, x[first:], config, positions, progress)
    table = connections_table(connections, prompt.strings, eps)
    n = len(positions)
    return AblationResult(
        table, prompt, n, eps, config, pair.layer, pair.kind, pair.k_in, pair.k_out, record
    )
