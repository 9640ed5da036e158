"""What ``jsae.ablation.ablate`` returns: one prompt's ``AblationResult``, or an
``AblationBatch`` of several (one table with a ``prompt`` column).

Both are read at any ε without recomputing (``with_eps``), and carry the ``Provenance``
every table written from them records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

from jsae.ablation_config import AblationConfig
from jsae.prompt import Prompt
from jsae.provenance import Provenance
from jsae.table import PROMPT_COLUMN, check_eps, split


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
        provenance: what a table written from it records (its ``source`` is the caller's
            to fill in: ``ablate`` does not know where the model came from).
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
    provenance: Provenance

    def with_eps(self, eps: float) -> AblationResult:
        """The same result re-split at another ε; nothing is recomputed."""
        eps = check_eps(eps)
        return replace(
            self, table=split(self.table, eps), eps=eps, provenance=self.provenance.replace(eps=eps)
        )


@dataclass
class AblationBatch:
    """Several prompts' results, one ``AblationResult`` each, as one table.

    Args:
        results: each prompt's result, in the order given.
        provenance: what a table written from it records (the prompts as a list).
    """

    results: tuple[AblationResult, ...]
    provenance: Provenance

    @cached_property
    def table(self) -> pd.DataFrame:
        """Every prompt's table stacked, with ``prompt`` (the prompt's index in the list)
        first: a token is (prompt, position)."""
        parts = [r.table for r in self.results]
        index = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
        stacked = pd.concat(parts, ignore_index=True)
        stacked["token"] = stacked["token"].astype(str).astype("category")
        stacked.insert(0, PROMPT_COLUMN, index)
        return stacked

    @property
    def prompts(self) -> list[Prompt]:
        return [r.prompt for r in self.results]

    @property
    def n_tokens(self) -> int:
        return sum(r.n_tokens for r in self.results)

    @property
    def eps(self) -> float:
        return self.provenance.eps

    def with_eps(self, eps: float) -> AblationBatch:
        """Every prompt re-split at another ε; nothing is recomputed."""
        eps = check_eps(eps)
        return AblationBatch(
            tuple(r.with_eps(eps) for r in self.results), self.provenance.replace(eps=eps)
        )
