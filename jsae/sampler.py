"""Which connections of each token to keep: the research code's three choices.

A token with ``n_in`` active input and ``n_out`` active output features has ``n_in·n_out``
connections (i, j). The samplers keep, per token:

* ``all`` — every one of them (the research notebook);
* ``equal_rank`` — the pairs of equal activation rank, the r-th strongest input feature
  with the r-th strongest output feature for r < min(n_in, n_out) (the paper's
  ``runners/ablation.py``; ties in activation go to the lower feature id);
* ``random`` — min(n_in, n_out) distinct pairs drawn uniformly without replacement (its
  linearity runs), from a generator seeded by (seed, position), so a token's draw does not
  depend on the rest of the prompt.

Every connection's numbers are measured on its own (one input feature perturbed at a
time), so keeping a subset of the engine's table gives exactly the numbers the sampled
pairs alone would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jsae.errors import InputError
from jsae.table import PROMPT_COLUMN

PAIR_SAMPLERS = ("all", "equal_rank", "random")
PAIR_SAMPLER_LABELS = {
    "all": "all k×k (the notebook)",
    "equal_rank": "k equal-rank pairs (the paper's runner)",
    "random": "k random pairs (seeded)",
}


@dataclass(frozen=True)
class PairSampler:
    """How to choose each token's connections.

    Args:
        how: one of ``PAIR_SAMPLERS``.
        seed: the ``random`` sampler's seed (a whole number ≥ 0); ignored otherwise.
    """

    how: str = "all"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.how not in PAIR_SAMPLERS:
            raise InputError(
                f"The pair sampler must be one of {', '.join(PAIR_SAMPLERS)}; got {self.how!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise InputError(f"The seed must be a whole number ≥ 0, got {self.seed!r}.")
        if self.seed < 0:
            raise InputError(f"The seed must be a whole number ≥ 0, got {self.seed!r}.")


def _token_columns(table: pd.DataFrame) -> list[str]:
    return [PROMPT_COLUMN, "position"] if PROMPT_COLUMN in table.columns else ["position"]


def _ranks(table: pd.DataFrame, tokens: list[str], feature: str, act: str) -> pd.Series:
    """Each row's feature's rank (0 = strongest) among its token's active ``feature``s."""
    distinct = table[[*tokens, feature, act]].drop_duplicates([*tokens, feature])
    distinct = distinct.sort_values(
        [*tokens, act, feature], ascending=[True] * len(tokens) + [False, True]
    )
    distinct["rank"] = distinct.groupby(tokens, sort=False).cumcount()
    merged = table[[*tokens, feature]].merge(distinct[[*tokens, feature, "rank"]], how="left")
    return pd.Series(merged["rank"].to_numpy(), index=table.index)


def sample_pairs(table: pd.DataFrame, sampler: PairSampler) -> pd.DataFrame:
    """The rows of ``table`` (an ablation table, one prompt's or a batch's) that ``sampler``
    keeps, in their original order."""
    if sampler.how == "all":
        return table
    tokens = _token_columns(table)
    if sampler.how == "equal_rank":
        keep = _ranks(table, tokens, "in_feature", "in_act") == _ranks(
            table, tokens, "out_feature", "out_act"
        )
        return table[keep.to_numpy()]
    chosen = []
    for token, rows in table.groupby(tokens, sort=True):
        ins = np.unique(rows["in_feature"].to_numpy())
        outs = np.unique(rows["out_feature"].to_numpy())
        position = int(token[-1] if isinstance(token, tuple) else token)
        rng = np.random.default_rng([sampler.seed, position])
        picks = rng.choice(len(ins) * len(outs), size=min(len(ins), len(outs)), replace=False)
        wanted = set(
            zip(ins[picks // len(outs)].tolist(), outs[picks % len(outs)].tolist(), strict=True)
        )
        pairs = zip(rows["in_feature"].tolist(), rows["out_feature"].tolist(), strict=True)
        chosen.append(rows.index[[pair in wanted for pair in pairs]])
    index = chosen[0].append(chosen[1:]) if chosen else table.index[:0]
    return table.loc[table.index.isin(index)]
