"""One analysis of one prompt's ablation: statistics, the pair's health, and the verdict.

``analyse`` is what every face calls (the CLI's ``jsae ablate``, the app's results pages, W&B):
it reads the ablation's table, reruns the model only to read the ablated tokens' MLP inputs
for the pair's health, and returns one ``Analysis`` whose fields each face shows as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from transformer_lens import HookedTransformer

from jsae.ablation import AblationResult
from jsae.analysis.effect import EffectStatistics, effect_statistics
from jsae.analysis.health import PairHealth, pair_health
from jsae.analysis.statistics import BOOTSTRAP_SEED, DEFAULT_TAU, N_BOOTSTRAP
from jsae.analysis.verdict import Verdict, verdict
from jsae.pair import JSAEPair
from jsae.prompt import mlp_inputs
from jsae.sandwich import Sandwich
from jsae.stats import Tolerance


@dataclass(frozen=True)
class Analysis:
    """Everything said about one table.

    Args:
        statistics: the ε-free numbers and the split's at the table's ε.
        health: the pair's health on the ablated tokens (None when not computed).
        verdict: the answer, from both.
    """

    statistics: EffectStatistics
    health: PairHealth | None
    verdict: Verdict

    def summary(self) -> pd.DataFrame:
        """The statistics' and the health's rows in one table (statistic, value, ci_low,
        ci_high, description)."""
        stats = self.statistics.summary()
        if self.health is None:
            return stats
        health = self.health.summary()
        health = health[~health["statistic"].isin(stats["statistic"])]  # "tokens" once
        health = health.assign(ci_low=float("nan"), ci_high=float("nan"))
        return pd.concat([stats, health[list(stats.columns)]], ignore_index=True)


def prompt_health(
    model: HookedTransformer, pair: JSAEPair, result: AblationResult, sandwich: Sandwich | None
) -> PairHealth | None:
    """The pair's health on the tokens ``result`` ablated (None when it ablated none)."""
    positions = sorted(set(result.table["position"].tolist()))
    if not positions:
        return None
    x = mlp_inputs(model, result.prompt.tokens, pair.layer)[positions]
    return pair_health(sandwich or Sandwich(model, pair), x.to(pair.sae_in.W_enc.dtype))


def analyse(
    model: HookedTransformer,
    pair: JSAEPair,
    result: AblationResult,
    *,
    tau: float = DEFAULT_TAU,
    tolerance: Tolerance | None = None,
    n_bootstrap: int = N_BOOTSTRAP,
    seed: int = BOOTSTRAP_SEED,
    sandwich: Sandwich | None = None,
) -> Analysis:
    """Statistics of ``result``'s table at its ε, the pair's health on its tokens, and the
    verdict."""
    stats = effect_statistics(
        result.table, result.eps, tau=tau, tolerance=tolerance, n_bootstrap=n_bootstrap, seed=seed
    )
    health = prompt_health(model, pair, result, sandwich)
    return Analysis(stats, health, verdict(stats, health))
