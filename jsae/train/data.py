"""What a pair trains on: token rows, and the stream of (MLP input, MLP output) activations.

Text becomes rows of ``context_size`` tokens, each starting with BOS (documents are joined
with BOS between them). Activations are read from the model as it goes (``run_with_cache``
up to block L), a block of sequences at a time, shuffled within the block; the sequences'
order is shuffled per epoch. The stream is a deterministic function of the seed and the token
position, so a run resumed from a checkpoint sees exactly the batches the uninterrupted run
would have seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.errors import InputError
from jsae.prompt import mlp_activations

TOKENIZE_BATCH = 512
"""Documents handed to the tokenizer at once."""


def tokenize_documents(
    model: HookedTransformer, documents: Iterable[str] | str, context_size: int
) -> Int[Tensor, "n_seq ctx"]:
    """Concatenate ``documents`` separated by BOS and cut into rows of ``context_size``
    tokens, each starting with BOS (the model's tokenizer must have a BOS token)."""
    tokenizer = model.tokenizer
    if tokenizer is None or tokenizer.bos_token_id is None:
        raise InputError("The model needs a tokenizer with a BOS token to read text.")
    if isinstance(documents, str):
        documents = [documents]
    bos = tokenizer.bos_token_id
    documents = [doc for doc in documents if doc]
    ids: list[int] = []
    for start in range(0, len(documents), TOKENIZE_BATCH):
        encoded = tokenizer(documents[start : start + TOKENIZE_BATCH], add_special_tokens=False)
        for doc_ids in encoded["input_ids"]:
            ids.append(bos)
            ids.extend(doc_ids)
    return chunk_token_ids(torch.tensor(ids, dtype=torch.long), context_size, bos)


def chunk_token_ids(ids: Int[Tensor, " n"], context_size: int, bos: int) -> Int[Tensor, "n ctx"]:
    """Rows of BOS + ``context_size - 1`` tokens (an incomplete last row is dropped)."""
    body = context_size - 1
    n = len(ids) // body
    rows = ids[: n * body].reshape(n, body)
    return torch.cat([torch.full((n, 1), bos, dtype=rows.dtype), rows], dim=1)


def training_tokens(
    model: HookedTransformer,
    data: Int[Tensor, "n_seq ctx"] | Iterable[str] | str,
    context_size: int,
) -> Int[Tensor, "n_seq ctx"]:
    """``data`` as rows of token ids: token ids are taken as they are (a single row may be
    1-D), text is tokenized with :func:`tokenize_documents`."""
    if isinstance(data, Tensor):
        tokens = data.long()
        if tokens.ndim == 1:
            tokens = tokens[None]
    else:
        tokens = tokenize_documents(model, data, context_size)
    if len(tokens) == 0:
        raise InputError("Not enough text to fill one sequence of the context size.")
    return tokens


class ActivationStream:
    """One layer's (MLP input, MLP output) activations, in a seeded, seekable order.

    Epoch e visits the sequences in a random order (seeded by ``(seed, e)``), a block of
    ``block_sequences`` at a time; a block's tokens are shuffled together (seeded by
    ``(seed, e, b)``) and concatenated into one endless stream of tokens. Token position p
    of the stream is a fixed function of the seed, so ``batches(start)`` can begin anywhere.
    """

    def __init__(
        self,
        model: HookedTransformer,
        tokens: Int[Tensor, "n_seq ctx"],
        layer: int,
        *,
        block_sequences: int,
        model_batch_size: int,
        seed: int,
        skip_bos: bool = True,
    ):
        if tokens.ndim != 2 or len(tokens) == 0:
            raise InputError("Need a non-empty [sequences, context] tensor of token ids.")
        self.model = model
        self.tokens = tokens
        self.layer = layer
        self.block_sequences = min(block_sequences, len(tokens))
        self.blocks_per_epoch = len(tokens) // self.block_sequences
        self.model_batch_size = model_batch_size
        self.seed = seed
        self.first = 1 if skip_bos else 0
        self.block_tokens = self.block_sequences * (tokens.shape[1] - self.first)

    @torch.no_grad()
    def block(self, index: int) -> tuple[Float[Tensor, "n d"], Float[Tensor, "n d"]]:
        """Block ``index`` of the stream (counted over all epochs), its tokens shuffled."""
        epoch, b = divmod(index, self.blocks_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.tokens))
        rows = torch.from_numpy(order[b * self.block_sequences : (b + 1) * self.block_sequences])
        xs: list[Tensor] = []
        ys: list[Tensor] = []
        device = self.model.cfg.device
        for start in range(0, len(rows), self.model_batch_size):
            batch = self.tokens[rows[start : start + self.model_batch_size]].to(device)
            x, y = mlp_activations(self.model, batch, [self.layer])[self.layer]
            xs.append(x[:, self.first :].flatten(0, 1))
            ys.append(y[:, self.first :].flatten(0, 1))
        x, y = torch.cat(xs), torch.cat(ys)
        shuffle = np.random.default_rng([self.seed, epoch, b]).permutation(len(x))
        shuffle_t = torch.from_numpy(shuffle).to(x.device)
        return x[shuffle_t].float(), y[shuffle_t].float()

    def batches(
        self, batch_tokens: int, start: int = 0
    ) -> Iterator[tuple[Float[Tensor, "b d"], Float[Tensor, "b d"]]]:
        """Endless batches of ``batch_tokens`` tokens, from stream position ``start``."""
        index, offset = divmod(start, self.block_tokens)
        x, y = self.block(index)
        x, y = x[offset:], y[offset:]
        while True:
            while len(x) < batch_tokens:
                index += 1
                nx, ny = self.block(index)
                x, y = torch.cat([x, nx]), torch.cat([y, ny])
            yield x[:batch_tokens], y[:batch_tokens]
            x, y = x[batch_tokens:], y[batch_tokens:]
