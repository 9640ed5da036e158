"""Prompts in, tokens and MLP-input activations out."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.errors import InputError

CHARS_PER_TOKEN = 16
"""A text longer than ``limit * CHARS_PER_TOKEN`` characters is cut to that many before it is
tokenized, so a huge prompt costs no more than a long one (a 3 MB prompt would otherwise be
tokenized whole to keep 512 tokens). Generous: English averages about 4 characters per
token; only text averaging more than 16 keeps fewer tokens than the limit."""


@dataclass
class Prompt:
    """A tokenized prompt.

    Args:
        tokens: token ids, BOS first when the model's tokenizer prepends one.
        strings: each token as text, as TransformerLens's ``to_str_tokens`` gives it.
        dropped: how many tokens were cut off the end to fit the length limit (of the text
            that was tokenized: see ``cut_chars``).
        limit: that limit (the model's context, or a smaller cap), BOS included.
        cut_chars: when the text was longer than ``limit * CHARS_PER_TOKEN`` characters, its
            length (only that many of them were tokenized); else 0.
        bos: whether ``tokens`` start with the BOS the tokenizer prepends.
    """

    tokens: Int[Tensor, " pos"]
    strings: list[str]
    dropped: int
    limit: int
    cut_chars: int = 0
    bos: bool = False

    @property
    def notice(self) -> str | None:
        """A sentence for the user when the prompt was truncated, else None."""
        if not (self.dropped or self.cut_chars):
            return None
        limit = f"the limit of {self.limit} tokens" + (" (BOS included)" if self.bos else "")
        if self.cut_chars:
            return (
                f"The prompt was {self.cut_chars:,} characters long, more than {self.limit} "
                f"tokens; everything after its first {len(self.tokens)} tokens was dropped to "
                f"fit {limit}."
            )
        return (
            f"The prompt was {len(self.tokens) + self.dropped} tokens long; the last "
            f"{self.dropped} were dropped to fit {limit}."
        )


PromptInput = str | Sequence[int] | Tensor | np.ndarray
"""One prompt: text, or token ids (a 1-D integer tensor or array, or a list of ints)."""

PROMPT_KINDS = (
    "text (a str), token ids (a 1-D integer tensor or a list of ints), or a list of those"
)


def is_token_ids(value: object) -> bool:
    """Whether ``value`` is given as token ids rather than text or a list of prompts."""
    if isinstance(value, Tensor | np.ndarray):
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    )


def is_prompt_list(value: object) -> bool:
    """Whether ``value`` is a list of prompts (each text or token ids), not one prompt."""
    return isinstance(value, list | tuple) and not is_token_ids(value)


def prompt_of(model: HookedTransformer, value: object, max_tokens: int | None = None) -> Prompt:
    """One prompt as a ``Prompt``: text is tokenized (``tokenize``), token ids are taken as
    given (``from_token_ids``); anything else is one clear error."""
    if isinstance(value, str):
        return tokenize(model, value, max_tokens)
    if is_token_ids(value):
        return from_token_ids(model, value, max_tokens)  # type: ignore[arg-type]
    raise InputError(f"A prompt is {PROMPT_KINDS}; got {type(value).__name__}.")


def prompt_within(
    model: HookedTransformer,
    value: object,
    include_bos: bool,
    max_tokens: int | None = None,
    max_ablated: int | None = None,
) -> Prompt:
    """``value`` as a ``Prompt`` (``prompt_of``) within ``max_tokens`` tokens, BOS included,
    and, when given, ``max_ablated`` ablated positions: a BOS the ablation leaves out
    (``include_bos`` False) does not count."""
    if max_ablated is None:
        return prompt_of(model, value, max_tokens)
    if isinstance(max_ablated, bool) or max_ablated < 1:
        raise InputError(f"At least one token must be ablated, got {max_ablated!r}.")
    bos = model.tokenizer.bos_token_id if model.tokenizer is not None else None
    if isinstance(value, str):  # the cap goes into tokenizing, which prepends the BOS
        cap = max_ablated + int(bos is not None and not include_bos)
        return prompt_of(model, value, cap if max_tokens is None else min(max_tokens, cap))
    prompt = prompt_of(model, value, max_tokens)
    keep = max_ablated + first_ablated(prompt.tokens, bos, include_bos)
    if len(prompt.tokens) <= keep:
        return prompt
    return replace(
        prompt,
        tokens=prompt.tokens[:keep],
        strings=prompt.strings[:keep],
        dropped=prompt.dropped + len(prompt.tokens) - keep,
        limit=min(prompt.limit, keep),
    )


def from_token_ids(
    model: HookedTransformer,
    ids: Sequence[int] | Tensor | np.ndarray,
    max_tokens: int | None = None,
) -> Prompt:
    """Token ids as a ``Prompt``, used as given (no BOS is prepended: include it yourself,
    as ``model.to_tokens`` does), truncated like text to the context or ``max_tokens``."""
    tokens = torch.as_tensor(np.asarray(ids) if not isinstance(ids, Tensor) else ids)
    if tokens.ndim != 1 or tokens.dtype == torch.bool or tokens.is_floating_point():
        raise InputError(
            f"Token ids must be a 1-D sequence of integers; got a {tokens.dtype} tensor of "
            f"shape {tuple(tokens.shape)} (a batch is a list of 1-D token id sequences)."
        )
    if len(tokens) == 0:
        raise InputError("The token ids are empty: give at least one token.")
    tokens = tokens.long().cpu()
    vocab = model.cfg.d_vocab
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
        raise InputError(
            f"Token ids must be from 0 to {vocab - 1} (the model's vocabulary); got "
            f"{int(tokens.min())}..{int(tokens.max())}."
        )
    limit = model.cfg.n_ctx if max_tokens is None else min(max_tokens, model.cfg.n_ctx)
    dropped = max(0, len(tokens) - limit)
    tokens = tokens[:limit]
    tokenizer = model.tokenizer
    ids_list = tokens.tolist()
    strings = token_strings(tokenizer, ids_list) if tokenizer else [str(t) for t in ids_list]
    bos = tokenizer.bos_token_id if tokenizer is not None else None
    return Prompt(tokens, strings, dropped, limit, bos=bos is not None and ids_list[0] == bos)


def check_prompt_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InputError("The prompt is empty: type some text to analyse.")
    return text


def tokenize(model: HookedTransformer, text: str, max_tokens: int | None = None) -> Prompt:
    """Tokenize ``text`` (BOS prepended), truncated to the context or ``max_tokens`` (BOS
    included); a text longer than the limit's ``CHARS_PER_TOKEN`` characters per token is
    cut to that many characters first."""
    check_prompt_text(text)
    if model.tokenizer is None:
        raise InputError("The model has no tokenizer; load it with one to analyse text.")
    limit = model.cfg.n_ctx if max_tokens is None else min(max_tokens, model.cfg.n_ctx)
    max_chars = limit * CHARS_PER_TOKEN
    cut_chars = len(text) if len(text) > max_chars else 0
    tokens = model.to_tokens(text[:max_chars], prepend_bos=True, truncate=False)[0]
    dropped = max(0, len(tokens) - limit)
    tokens = tokens[:limit]
    strings = token_strings(model.tokenizer, tokens.tolist())
    bos = model.tokenizer.bos_token_id
    return Prompt(
        tokens=tokens,
        strings=strings,
        dropped=dropped,
        limit=limit,
        cut_chars=cut_chars,
        bos=bos is not None and len(tokens) > 0 and int(tokens[0]) == bos,
    )


def token_strings(tokenizer: Any, ids: Iterable[int]) -> list[str]:
    """Each token id decoded on its own: the text a results table shows for a token."""
    return [tokenizer.decode([t]) for t in ids]


def first_ablated(
    tokens: Int[Tensor, " pos"] | np.ndarray, bos: int | None, include_bos: bool
) -> int:
    """The first position the engine ablates: 1 when position 0 is the BOS token and BOS is
    left out (the notebook's choice: BOS is an outlier in most models), else 0."""
    return int(not include_bos and bos is not None and len(tokens) > 0 and int(tokens[0]) == bos)


# Reading activations adds hooks to the model's modules for the duration of the forward
# pass. On a model shared between threads (the app's sessions share one through
# st.cache_resource) a concurrent forward would run the other thread's hooks too and
# overwrite its activations, so hooked forwards on one model take turns.
_HOOK_LOCKS: weakref.WeakKeyDictionary[HookedTransformer, threading.Lock] = (
    weakref.WeakKeyDictionary()
)
_HOOK_LOCKS_GUARD = threading.Lock()


def hook_lock(model: HookedTransformer) -> threading.Lock:
    """The lock that serialises hooked forward passes on ``model``."""
    with _HOOK_LOCKS_GUARD:
        lock = _HOOK_LOCKS.get(model)
        if lock is None:
            lock = _HOOK_LOCKS[model] = threading.Lock()
        return lock


@torch.no_grad()
def mlp_activations(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], layers: Sequence[int]
) -> dict[int, tuple[Float[Tensor, "batch pos d_model"], Float[Tensor, "batch pos d_model"]]]:
    """What each block's MLP receives and returns, for a batch of token rows: per layer,
    (MLP input, MLP output).

    The input is what ``blocks.L.mlp`` is called with: ``ln2``'s output *with* its gain and
    bias. TransformerLens 3 takes ``blocks.L.ln2.hook_normalized`` before the gain and bias
    (its 2.x releases, which the research code used, took it after), so that hook is the MLP
    input only on a model whose LayerNorms are folded (``LNPre``/``RMSPre``); the module's own
    input is right for every model. The output is ``blocks.L.hook_mlp_out``, what the output
    SAE reads. This is the one place jsae reads a pair's activations from a model.
    """
    captured: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    with hook_lock(model):  # the hooks live on shared modules: registered under the lock too
        handles = []
        try:
            for layer in layers:
                block, grab = model.blocks[layer], captured[layer].append
                handles.append(
                    block.mlp.register_forward_pre_hook(lambda _m, args, grab=grab: grab(args[0]))
                )
                handles.append(
                    block.hook_mlp_out.register_forward_hook(
                        lambda _m, _args, out, grab=grab: grab(out)
                    )
                )
            model(tokens.to(model.cfg.device), stop_at_layer=max(layers) + 1)
        finally:
            for handle in handles:
                handle.remove()
    return {layer: (parts[0], parts[1]) for layer, parts in captured.items()}


def mlp_inputs(
    model: HookedTransformer, tokens: Int[Tensor, " pos"], layer: int
) -> Float[Tensor, "pos d_model"]:
    """Block ``layer``'s MLP input for every position of one sequence (see
    ``mlp_activations``)."""
    return mlp_activations(model, tokens[None], [layer])[layer][0][0]
