"""Runs: one prompt's ablation, computed once and read at any ε.

A ``RunKey`` names everything a run's table depends on (ε is not part of it: changing ε
only re-splits the table), so the app can cache runs by key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd

from jsae import ablation
from jsae.ablation import AblationConfig, AblationResult, ProgressCallback
from jsae.provenance import Provenance
from jsae.sampler import PairSampler, sample_result
from jsae.sandwich import Sandwich
from jsae.table import DEFAULT_EPS, check_eps, split


@dataclass(frozen=True)
class RunKey:
    """What a computed table depends on (ε is not part of it: it only re-splits); ``pairs``
    and ``seed`` say which connections of each token it keeps (``jsae.sampler``)."""

    source: str
    model: str | None
    layer: int
    kind: str
    mode: str
    scale: float
    text: str
    pairs: str = "all"
    seed: int = 0

    @property
    def sampler(self) -> PairSampler:
        return PairSampler(self.pairs, int(self.seed))


@dataclass
class RunData:
    """One prompt's ablation, read ε-free: ε only re-splits it.

    Args:
        ablation: what ``jsae.ablation.ablate`` returned (split at ``DEFAULT_EPS``; it knows
            its prompt, settings, layer, pair kind, k_in and k_out).
        key: what it was computed from.
    """

    ablation: AblationResult
    key: RunKey

    @cached_property
    def table(self) -> pd.DataFrame:
        """``jsae.table.COLUMNS`` minus ``important``."""
        return self.ablation.table.drop(columns=["important"])

    @property
    def strings(self) -> list[str]:
        """The prompt's tokens as text (BOS first)."""
        return list(self.ablation.prompt.strings)

    @cached_property
    def positions(self) -> list[int]:
        """The token positions that were ablated (BOS excluded)."""
        return sorted(set(self.table["position"].tolist())) if len(self.table) else []

    @property
    def notice(self) -> str | None:
        """The truncation notice (``Prompt.notice``) or ``None``."""
        return self.ablation.prompt.notice

    def split(self, eps: float) -> pd.DataFrame:
        """The table with ``important`` = |J| > ε."""
        return split(self.table, eps)

    def provenance(self, eps: float) -> Provenance:
        """What a download of this run at ε records (``jsae.provenance``)."""
        record = self.ablation.provenance
        return record.replace(source=self.key.source, model=self.key.model, eps=check_eps(eps))

    def result(self, eps: float) -> AblationResult:
        """This run as the ``AblationResult`` ``ablate`` returned, split at ε."""
        return self.ablation.with_eps(eps)


def run_ablation(
    source: Any,
    key: RunKey,
    progress: ProgressCallback | None = None,
    sandwich: Sandwich | None = None,
    max_tokens: int | None = None,
) -> RunData:
    """Both experiments on ``key.text`` through ``source``'s ``key.kind`` pair at ``key.layer``.

    Calls ``jsae.ablation.ablate`` (looked up at call time) and drops the ε split; keeps
    the connections ``key.sampler`` chooses (``jsae.sampler.sample_result``: its downloads
    record the sampler).
    """
    config = AblationConfig(mode=key.mode, scale=float(key.scale))
    result = ablation.ablate(
        source.model_for(key.layer, key.kind),
        source.pair(key.layer, key.kind),
        key.text,
        eps=DEFAULT_EPS,
        config=config,
        progress=progress,
        max_tokens=max_tokens,
        sandwich=sandwich,
    )
    return RunData(sample_result(result, key.sampler), key)
