"""One corpus run's settings (``CorpusJob``) and the error a corpus run raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jsae.ablation import AblationConfig
from jsae.errors import InputError, JSAEError
from jsae.loading import DEMO_SOURCE
from jsae.pair import DEFAULT_KIND
from jsae.sampler import PairSampler
from jsae.table import DEFAULT_EPS, check_eps

ENGINES = ("local", "ray")
DEFAULT_ENGINE = ENGINES[0]

CorpusProgress = Callable[[int, int | None], None]
"""Called as ``progress(tokens_done, max_tokens_or_None)``; tokens count every run so far."""


class CorpusError(JSAEError):
    """A corpus or output folder is unusable (missing, unreadable, another run's folder)."""


@dataclass(frozen=True)
class CorpusJob:
    """One corpus run: what to ablate, over which corpus, written where.

    Args:
        dataset: a text file, a folder of ``.txt`` files, or a HF dataset folder.
        output: the folder for the shards and ``manifest.json``.
        source: ``"demo"``, a local folder or a W&B artifact path (as ``load_source``).
        model: a model for a pair folder (name or folder), or None.
        layer: block whose MLP to test (None: the first with a pair of ``pair_kind``).
        pair_kind: ``"jsae"`` or ``"plain"``.
        eps: ε of the stored ``important`` column (statistics re-split at any ε later).
        ablation: mode, scale, BOS and memory settings (None: ``AblationConfig()``).
        window_tokens: tokens per window, BOS included (None: the model's context).
        text_column: the text column of a HF dataset.
        split: the split of a HF ``DatasetDict`` (None: ``train``, or its only split).
        max_tokens: stop once this many tokens are ablated, counting earlier runs into
            ``output`` (the last window is finished, so up to one window more).
        shard_tokens: tokens per shard (None: about 2 million connections per shard).
        device: torch device.
        joint: also remove each output feature's inputs together (``jsae.analysis.joint``)
            and keep each shard's exact joint sums at ``eps`` in its Parquet metadata.
        sampler: which connections of each token the shards keep (``jsae.sampler``; a
            token's draw depends on its document, window and position, not on the sharding).
            The joint sums always use every input.
    """

    dataset: Path
    output: Path
    source: str = DEMO_SOURCE
    model: str | None = None
    layer: int | None = None
    pair_kind: str = DEFAULT_KIND
    eps: float = DEFAULT_EPS
    ablation: AblationConfig | None = None
    window_tokens: int | None = None
    text_column: str = "text"
    split: str | None = None
    max_tokens: int | None = None
    shard_tokens: int | None = None
    device: str = "cpu"
    joint: bool = False
    sampler: PairSampler = PairSampler()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", Path(self.dataset).expanduser())
        object.__setattr__(self, "output", Path(self.output).expanduser())
        object.__setattr__(self, "eps", check_eps(self.eps))
        for name in ("window_tokens", "max_tokens", "shard_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise InputError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value!r}."
                )

    @property
    def config(self) -> AblationConfig:
        return self.ablation or AblationConfig()
