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

All k_in perturbations of a chunk of tokens run through the MLP and the output SAE as one
batch. Since pre(x') = pre(x) - s * (W_dec_in @ W_in)[i], the perturbed MLP pre-activations
come from the sandwich's precomputed product instead of a second W_in matmul. ε plays no
part here: ``split`` divides the connections into important (|J| > ε) and unimportant
(|J| <= ε) afterwards, so changing ε never recomputes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.errors import InputError
from jsae.pair import JSAEPair
from jsae.prompt import Prompt, mlp_inputs, tokenize
from jsae.sandwich import Sandwich

MODES = ("unit", "zero", "scale")
COLUMNS = (
    "position",
    "token",
    "in_feature",
    "out_feature",
    "in_act",
    "out_act",
    "jacobian",
    "predicted",
    "diff",
    "important",
)

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
        if self.mode == "scale" and not (
            isinstance(self.scale, int | float) and math.isfinite(self.scale)
        ):
            raise InputError(f"The scale must be a finite number, got {self.scale!r}.")
        if self.memory_budget <= 0:
            raise InputError("The memory budget must be a positive number of bytes.")

    def perturbation(self, in_act: Float[Tensor, "tokens k_in"]) -> Float[Tensor, "tokens k_in"]:
        """The step s along each active input feature's decoder direction."""
        if self.mode == "zero":
            return in_act
        s = 1.0 if self.mode == "unit" else float(self.scale)
        return torch.full_like(in_act, s)


@dataclass
class Connections:
    """Every connection of a run as flat tensors, ordered (position, in rank, out rank).

    Args:
        position: the token position each connection belongs to.
        in_feature, out_feature: the input and output SAE feature ids.
        in_act, out_act: their activations on the unperturbed token.
        jacobian: J[out_feature, in_feature] on that token.
        predicted: the first-order prediction of diff, -s * J.
        diff: out_act after the perturbation minus out_act before.
    """

    position: Int[Tensor, " n"]
    in_feature: Int[Tensor, " n"]
    out_feature: Int[Tensor, " n"]
    in_act: Float[Tensor, " n"]
    out_act: Float[Tensor, " n"]
    jacobian: Float[Tensor, " n"]
    predicted: Float[Tensor, " n"]
    diff: Float[Tensor, " n"]


def tokens_per_chunk(pair: JSAEPair, d_model: int, d_mlp: int, memory_budget: int) -> int:
    """How many tokens' perturbations fit into ``memory_budget`` bytes of float32 work."""
    # per perturbed row: output-SAE pre-activations, the top-k indices, and the MLP's
    # pre/post activations and output; the k x k membership mask is per (row, k_out).
    per_row = 4 * (pair.d_sae_out + 2 * pair.k_out + 3 * d_mlp + 2 * d_model)
    per_row += pair.k_out * pair.k_out
    return max(1, memory_budget // (per_row * pair.k_in))


@torch.no_grad()
def ablate_chunk(
    sandwich: Sandwich, x: Float[Tensor, "tokens d_model"], config: AblationConfig
) -> tuple[
    Int[Tensor, "tokens k_in"],
    Int[Tensor, "tokens k_out"],
    Float[Tensor, "tokens k_in"],
    Float[Tensor, "tokens k_out"],
    Float[Tensor, "tokens k_in k_out"],
    Float[Tensor, "tokens k_in k_out"],
    Float[Tensor, "tokens k_in k_out"],
]:
    """One batched pass: the diffs of all k_in x k_out connections of every token in x."""
    base = sandwich(x)
    s = config.perturbation(base.in_act)
    # pre(x - s W_dec_in[i]) = pre(x) - s (W_dec_in @ W_in)[i]
    pre = base.pre[:, None, :] - s[:, :, None] * sandwich.dec_in_W_in[base.in_idx]
    out_pre = sandwich.out_pre(sandwich.mlp.out_from_pre(pre))  # tokens k_in d_sae_out
    k_out = sandwich.pair.k_out
    top_idx = torch.topk(out_pre, k=k_out, dim=-1, sorted=False).indices
    del pre
    out_idx = base.out_idx[:, None, :].expand(-1, top_idx.shape[1], -1)
    new_pre = out_pre.gather(-1, out_idx)  # tokens k_in k_out
    del out_pre
    # An output feature that left the top k after the perturbation reads 0.
    still_active = (top_idx[..., :, None] == out_idx[..., None, :]).any(dim=-2)
    new_act = torch.where(still_active, new_pre.relu(), torch.zeros_like(new_pre))
    diff = new_act - base.out_act[:, None, :]
    jacobian = base.jacobian.transpose(1, 2)  # tokens k_in k_out
    predicted = -s[:, :, None] * jacobian
    return base.in_idx, base.out_idx, base.in_act, base.out_act, jacobian, predicted, diff


def ablate_activations(
    sandwich: Sandwich,
    x: Float[Tensor, "pos d_model"],
    config: AblationConfig,
    positions: Int[Tensor, " pos"] | None = None,
    progress: ProgressCallback | None = None,
) -> Connections:
    """Run the engine over MLP inputs ``x`` in memory-bounded chunks of tokens."""
    if positions is None:
        positions = torch.arange(len(x))
    pair = sandwich.pair
    chunk = tokens_per_chunk(pair, x.shape[-1], sandwich.mlp.W_in.shape[-1], config.memory_budget)
    parts: dict[str, list[Tensor]] = {name: [] for name in Connections.__dataclass_fields__}
    total = len(x)
    for start in range(0, total, chunk):
        xs = x[start : start + chunk]
        in_idx, out_idx, in_act, out_act, jac, predicted, diff = ablate_chunk(sandwich, xs, config)
        n, k_in, k_out = diff.shape
        grid = (n, k_in, k_out)
        pos = positions[start : start + chunk]
        parts["position"].append(pos[:, None, None].expand(grid).reshape(-1))
        parts["in_feature"].append(in_idx[:, :, None].expand(grid).reshape(-1))
        parts["out_feature"].append(out_idx[:, None, :].expand(grid).reshape(-1))
        parts["in_act"].append(in_act[:, :, None].expand(grid).reshape(-1))
        parts["out_act"].append(out_act[:, None, :].expand(grid).reshape(-1))
        parts["jacobian"].append(jac.reshape(-1))
        parts["predicted"].append(predicted.reshape(-1))
        parts["diff"].append(diff.reshape(-1))
        if progress is not None:
            progress(min(start + chunk, total), total)
    return Connections(**{name: _cat(p) for name, p in parts.items()})


def _cat(parts: list[Tensor]) -> Tensor:
    return torch.cat(parts) if parts else torch.empty(0)


@dataclass
class AblationResult:
    """One prompt's connections as a tidy table, plus what was measured on.

    Args:
        table: one row per connection, columns ``COLUMNS`` (``important`` at ``eps``).
        prompt: the tokenized prompt (with how many tokens were dropped).
        n_tokens: how many positions were ablated (BOS excluded unless asked).
        eps: the ε that ``important`` was split at.
        config: the ablation settings used.
    """

    table: pd.DataFrame
    prompt: Prompt
    n_tokens: int
    eps: float
    config: AblationConfig

    def with_eps(self, eps: float) -> AblationResult:
        """The same result re-split at another ε; nothing is recomputed."""
        return AblationResult(split(self.table, eps), self.prompt, self.n_tokens, eps, self.config)


def check_eps(eps: object) -> float:
    """ε must be a finite number greater than 0."""
    if isinstance(eps, bool):
        raise InputError(f"ε must be a number, got {eps!r}.")
    try:
        value = float(eps)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"ε must be a number, got {eps!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"ε must be a finite number greater than 0, got {eps!r}.")
    return value


def split(table: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Set ``important`` = |J| > ε (so |J| <= ε is unimportant). Returns a new frame."""
    eps = check_eps(eps)
    out = table.copy(deep=False)
    out["important"] = np.abs(table["jacobian"].to_numpy()) > eps
    return out


def connections_table(connections: Connections, prompt: Prompt, eps: float) -> pd.DataFrame:
    """The tidy per-connection DataFrame (tokens as a categorical column)."""
    position = connections.position.numpy().astype(np.int32)
    categories = list(dict.fromkeys(prompt.strings))
    code_of = {text: code for code, text in enumerate(categories)}
    codes = np.array([code_of[text] for text in prompt.strings], dtype=np.int32)
    token = pd.Categorical.from_codes(codes[position], categories=categories)
    table = pd.DataFrame(
        {
            "position": position,
            "token": token,
            "in_feature": connections.in_feature.numpy().astype(np.int32),
            "out_feature": connections.out_feature.numpy().astype(np.int32),
            "in_act": connections.in_act.float().numpy(),
            "out_act": connections.out_act.float().numpy(),
            "jacobian": connections.jacobian.float().numpy(),
            "predicted": connections.predicted.float().numpy(),
            "diff": connections.diff.float().numpy(),
        }
    )
    return split(table, eps)


def ablate(
    model: HookedTransformer,
    pair: JSAEPair,
    text: str,
    eps: float = 0.01,
    config: AblationConfig | None = None,
    progress: ProgressCallback | None = None,
    max_tokens: int | None = None,
    sandwich: Sandwich | None = None,
) -> AblationResult:
    """Both experiments on one prompt: tokenize, read the MLP inputs, ablate, tabulate."""
    config = config or AblationConfig()
    eps = check_eps(eps)
    pair.check_model(model)
    prompt = tokenize(model, text, max_tokens=max_tokens)
    sandwich = sandwich or Sandwich(model, pair)
    x = mlp_inputs(model, prompt.tokens, pair.layer).to(sandwich.mlp.W_in.dtype)
    positions = torch.arange(len(prompt.tokens))
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    if not config.include_bos and len(positions) and prompt.tokens[0].item() == bos:
        x, positions = x[1:], positions[1:]
    connections = ablate_activations(sandwich, x, config, positions, progress)
    table = connections_table(connections, prompt, eps)
    return AblationResult(table, prompt, len(positions), eps, config)
