"""The package's byte-level BPE tokenizer: the bundled default's and the planted model's.

Byte-level, so every text tokenizes (a byte no merge covers is its own token), with the BOS
token ``<|endoftext|>`` prepended, as TransformerLens expects of a tokenizer. Trained on a
corpus it learns merges up to ``vocab_size``; with ``vocab_size`` = ``BYTE_VOCAB`` it has no
merges at all: one token per byte, plus BOS.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS = "<|endoftext|>"
"""The BOS (and EOS) token."""
BYTE_VOCAB = len(pre_tokenizers.ByteLevel.alphabet()) + 1
"""The smallest vocabulary: the 256 byte symbols and BOS."""


def train_tokenizer(
    texts: list[str], vocab_size: int, min_frequency: int = 2, name: str = "jsae-demo"
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with BOS ``<|endoftext|>``, usable by HookedTransformer:
    merges pairs seen at least ``min_frequency`` times, up to ``vocab_size`` tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=min_frequency,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        add_bos_token=True,
        name_or_path=name,
    )


def byte_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """One token per byte, plus BOS (id 0): ``BYTE_VOCAB`` tokens, no merges."""
    return train_tokenizer([], BYTE_VOCAB, name=name)
