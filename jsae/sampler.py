"""Which connections of each token to keep: the research code's three choices.

A token with ``n_in`` active input and ``n_out`` active output features has ``n_in·n_out``
connections (i, j). The samplers keep, per token:

* ``all`` — every one of them (the research notebook);
* ``equal_rank`` — the pairs of equal activation rank, the r-th strongest input feature
  with the r-th strongest output feature for r < min(n_in, n_out) (the paper's
  ``runners/ablation.py``; ties in activation go to the lower feature id);
* ``random`` — min(n_in, n_out) distinct pairs drawn uniformly without replacement (its
  linearity runs): the flat index ``a·n_out + b`` of the a-th input and b-th output feature
  by id, from ``numpy.random.default_rng([seed, *key])``, where ``key`` is the token's own
  name in its table (``jsae.table.TOKEN_KEYS``): its position for one prompt; (prompt,
  position) for a batch; (document, window, position) for a corpus shard, the document id
  (its path in the corpus, or its row number) entering as the first 8 bytes of its SHA-256.
  A token's draw therefore depends on the seed and on where the token is, never on the other
  tokens of its table: a corpus gives the same pairs however its run is cut into shards.

Every connection's numbers are measured on its own (one input feature perturbed at a
time), so keeping a subset of the engine's table gives exactly the numbers the sampled
pairs alone would have. The joint ablation (``jsae.analysis.joint``) removes inputs
together and always uses every input of every token: a sampler chooses only the rows of the
single-connection table.

A table's sampler is recorded with it (``PairSampler.record``: the ``pairs`` and
``pairs_seed`` fields of ``jsae.provenance.Provenance`` and of a corpus run's manifest).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from jsae.errors import InputError
from jsae.result import AblationResult
from jsae.table import TOKEN_KEYS

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

    def record(self) -> dict[str, Any]:
        """The sampler as a written table records it: ``pairs`` (how) and ``pairs_seed`` (the
        random sampler's seed, None for the others, whose choice has none)."""
        return {"pairs": self.how, "pairs_seed": int(self.seed) if self.how == "random" else None}

    @classmethod
    def of(cls, record: Mapping[str, Any] | Any) -> PairSampler:
        """The sampler a record names (``record``'s output as a mapping, or an object with
        those attributes, such as a ``Provenance``); ``all`` when it names none."""
        get = record.get if isinstance(record, Mapping) else (lambda k: getattr(record, k, None))
        seed = get("pairs_seed")
        return cls(get("pairs") or "all", 0 if seed is None else seed)

    def describe(self) -> str:
        """The sampler in words, for a summary line."""
        seed = f", seed {self.seed}" if self.how == "random" else ""
        return f"{PAIR_SAMPLER_LABELS[self.how]}{seed}"


def _key_value(value: Any) -> int:
    """One part of a token's key as seed entropy: an id as it is, a document's name as the
    first 8 bytes of its SHA-256 (a whole number ≥ 0 either way)."""
    if isinstance(value, str):
        return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:8], "big")
    return int(value)


def _tokens(table: pd.DataFrame) -> tuple[np.ndarray, list[list[int]]]:
    """Each row's token (0 .. n_tokens − 1) and each token's key as seed entropy."""
    columns = [c for c in TOKEN_KEYS if c in table.columns]
    codes = table.groupby(columns, sort=False, observed=True).ngroup().to_numpy()
    _, first = np.unique(codes, return_index=True)
    keys = table[columns].iloc[first].astype(object).to_numpy()
    return codes, [[_key_value(v) for v in row] for row in keys]


def _ranks(work: pd.DataFrame, feature: str, act: str) -> np.ndarray:
    """Each row's feature's rank (0 = strongest, ties to the lower id) among its token's
    active ``feature``s; ``work`` has the token's number as ``token``."""
    distinct = work[["token", feature, act]].drop_duplicates(["token", feature])
    distinct = distinct.sort_values(["token", act, feature], ascending=[True, False, True])
    distinct["rank"] = distinct.groupby("token", sort=False).cumcount()
    merged = work[["token", feature]].merge(distinct[["token", feature, "rank"]], how="left")
    return merged["rank"].to_numpy()


def _random_rows(codes: np.ndarray, keys: list[list[int]], work: pd.DataFrame, seed: int):
    """The rows the ``random`` sampler keeps (a boolean mask)."""
    by_token = work.groupby("token", sort=True)
    in_index = by_token["in_feature"].rank(method="dense").to_numpy(np.int64) - 1
    out_index = by_token["out_feature"].rank(method="dense").to_numpy(np.int64) - 1
    n_in = by_token["in_feature"].nunique().to_numpy()
    n_out = by_token["out_feature"].nunique().to_numpy()
    flat = in_index * n_out[codes] + out_index
    stride = int((n_in * n_out).max()) + 1 if len(n_in) else 1
    wanted = [
        token * stride
        + np.random.default_rng([seed, *key]).choice(
            n_in[token] * n_out[token], size=min(n_in[token], n_out[token]), replace=False
        )
        for token, key in enumerate(keys)
    ]
    chosen = np.concatenate(wanted) if wanted else np.zeros(0, np.int64)
    return np.isin(codes * stride + flat, chosen)


def sampled_rows(table: pd.DataFrame, sampler: PairSampler) -> np.ndarray:
    """Which rows of ``table`` (an ablation table: one prompt's, a batch's or a corpus
    shard's, or several shards together) ``sampler`` keeps, as a boolean mask."""
    if sampler.how == "all" or not len(table):
        return np.ones(len(table), dtype=bool)
    codes, keys = _tokens(table)
    work = pd.DataFrame(
        {
            "token": codes,
            **{c: table[c].to_numpy() for c in ("in_feature", "out_feature", "in_act", "out_act")},
        }
    )
    if sampler.how == "equal_rank":
        return _ranks(work, "in_feature", "in_act") == _ranks(work, "out_feature", "out_act")
    return _random_rows(codes, keys, work, sampler.seed)


def sample_pairs(table: pd.DataFrame, sampler: PairSampler) -> pd.DataFrame:
    """The rows of ``table`` that ``sampler`` keeps, in their original order (``table``
    itself for ``all``)."""
    if sampler.how == "all":
        return table
    return table[sampled_rows(table, sampler)]


def sample_result(result: AblationResult, sampler: PairSampler) -> AblationResult:
    """``result`` keeping only the connections ``sampler`` chooses, its provenance recording
    the sampler (what the CLI, the app's downloads and W&B write)."""
    return replace(
        result,
        table=sample_pairs(result.table, sampler),
        provenance=result.provenance.replace(**sampler.record()),
    )
