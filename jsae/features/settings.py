"""What a feature-card build keeps: ``CardSettings``, and the file names of a card folder.

A card folder (``cards/{kind}/layer_{L}/`` beside the source) holds, per SAE side (``in``,
``out``) and feature f:

- the ``n_top`` largest activations of f over the token rows, each as (sequence, position,
  activation) into the token rows the build read (stored once per card folder root as
  ``tokens-{sha}.safetensors``), never as copies of token windows;
- a histogram of log10(activation) of every firing (activation > 0), on ``bins`` equal-width
  bins over ``log10_range`` (``jsae.histogram``'s rule), values outside clipped into the end
  bins, so the counts add up to the firing count;
- its firing count over the tokens read (BOS tokens left out);
- for output features, the ``n_logits`` tokens its decoder direction promotes most through
  the unembedding (``jsae.features.logits``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from jsae.errors import InputError

SIDES = ("in", "out")
"""The two SAEs of a pair: the input SAE (MLP input) and the output SAE (MLP output)."""
CARDS_DIR = "cards"
"""The folder beside a source that holds its cards."""
META_FILE = "cards.json"
FEATURES_FILE = "features.parquet"
CONTEXTS_FILE = "contexts.parquet"
LOGITS_FILE = "logits.parquet"
CHECKPOINT_FILE = "checkpoint.safetensors"
CARD_FILES = (META_FILE, FEATURES_FILE, CONTEXTS_FILE, LOGITS_FILE)
FORMAT_VERSION = 1


def card_folder_name(kind: str, layer: int) -> str:
    """Where a pair's cards live inside a cards folder."""
    return f"{kind}/layer_{layer}"


@dataclass(frozen=True)
class CardSettings:
    """How cards are built.

    Args:
        n_top: top-activating contexts kept per feature.
        n_logits: promoted tokens kept per output feature.
        bins: histogram bins of log10(activation).
        log10_range: the histogram's range of log10(activation); firings outside it are
            counted in the first or last bin.
        batch_rows: token rows per forward pass.
        checkpoint_rows: token rows between checkpoints (a multiple of ``batch_rows``, so a
            resumed build runs the same batches and gives bitwise the same cards).
    """

    n_top: int = 10
    n_logits: int = 10
    bins: int = 32
    log10_range: tuple[float, float] = (-4.0, 4.0)
    batch_rows: int = 8
    checkpoint_rows: int = 64

    def __post_init__(self) -> None:
        for name in ("n_top", "n_logits", "bins", "batch_rows", "checkpoint_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"CardSettings.{name} must be a whole number ≥ 1, got {value!r}.")
        if self.n_top > 32767:
            raise InputError(f"CardSettings.n_top must be at most 32767, got {self.n_top}.")
        lo, hi = self.log10_range
        if not lo < hi:
            raise InputError(
                f"CardSettings.log10_range must be (low, high), low < high; got {self.log10_range}."
            )
        if self.checkpoint_rows % self.batch_rows:
            raise InputError(
                f"CardSettings.checkpoint_rows ({self.checkpoint_rows}) must be a multiple of "
                f"batch_rows ({self.batch_rows}), so a resumed build runs the same batches."
            )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["log10_range"] = list(self.log10_range)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CardSettings:
        data = dict(data)
        data["log10_range"] = tuple(data["log10_range"])
        return cls(**data)

    def same_result(self, other: CardSettings) -> bool:
        """Whether two settings build the same cards (``checkpoint_rows`` does not matter)."""
        mine, theirs = self.to_json(), other.to_json()
        mine.pop("checkpoint_rows")
        theirs.pop("checkpoint_rows")
        return mine == theirs
