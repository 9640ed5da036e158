"""One analysis of one prompt's ablation: statistics, the pair's health, and the verdict.

``analyse`` is what every face calls (the CLI's ``jsae ablate``, the app's results pages, W&B):
it reads the ablation's table, reruns the model only to read the ablated tokens' MLP inputs
for the pair's health, and returns one ``Analysis`` whose fields each face shows as they are.
Where the source knows the MLP's true edges (``Source.true_edges``), the analysis also says
how well the connections find them (``jsae.analysis.ground_truth``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from jsae.ablation import AblationResult, ProgressCallback
from jsae.analysis.downstream import DownstreamKL, downstream_kl
from jsae.analysis.effect import EffectStatistics, effect_statistics
from jsae.analysis.faithfulness import JointStatistics, joint_statistics
from jsae.analysis.ground_truth import EdgeRecovery, edge_recovery
from jsae.analysis.health import PairHealth, pair_health
from jsae.analysis.joint import JOINT_SEED, JointCurves, joint_curves
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
        verdict: the answer, from all of them.
        joint: the joint ablation's statistics at the table's ε (None when not run).
        downstream: the next-token KL when output features keep only some inputs (None
            when not run).
        edges: the connections against the true edges, when they are known.
    """

    statistics: EffectStatistics
    health: PairHealth | None
    verdict: Verdict
    joint: JointStatistics | None = None
    downstream: DownstreamKL | None = None
    edges: EdgeRecovery | None = None

    def summary(self, joint: bool = True) -> pd.DataFrame:
        """The statistics', the health's and (unless ``joint`` is False) the joint ablation's
        rows in one table (statistic, value, ci_low, ci_high, description)."""
        stats = self.statistics.summary()
        parts = [stats]
        if self.health is not None:
            health = self.health.summary()
            health = health[~health["statistic"].isin(stats["statistic"])]  # "tokens" once
            health = health.assign(ci_low=float("nan"), ci_high=float("nan"))
            parts.append(health[list(stats.columns)])
        if joint and self.joint is not None:
            parts.append(self.joint.summary())
        if joint and self.downstream is not None:
            parts.append(self.downstream.summary())
        return pd.concat(parts, ignore_index=True)


def _ablated_inputs(model: HookedTransformer, pair: JSAEPair, result: AblationResult):
    """The positions ``result`` ablated and their MLP inputs."""
    positions = sorted(set(result.table["position"].tolist()))
    x = mlp_inputs(model, result.prompt.tokens, pair.layer)[positions]
    return torch.tensor(positions, dtype=torch.long), x.to(pair.sae_in.W_enc.dtype)


def prompt_health(
    model: HookedTransformer, pair: JSAEPair, result: AblationResult, sandwich: Sandwich | None
) -> PairHealth | None:
    """The pair's health on the tokens ``result`` ablated (None when it ablated none)."""
    positions, x = _ablated_inputs(model, pair, result)
    if not len(positions):
        return None
    return pair_health(sandwich or Sandwich(model, pair), x)


def prompt_curves(
    model: HookedTransformer,
    pair: JSAEPair,
    result: AblationResult,
    sandwich: Sandwich | None = None,
    seed: int = JOINT_SEED,
    progress: ProgressCallback | None = None,
) -> JointCurves:
    """The joint ablation's curves on the tokens ``result`` ablated, in its mode."""
    positions, x = _ablated_inputs(model, pair, result)
    sandwich = sandwich or Sandwich(model, pair)
    return joint_curves(sandwich, x, result.config, positions, seed, progress)


def prompt_downstream(
    model: HookedTransformer,
    pair: JSAEPair,
    result: AblationResult,
    curves: JointCurves | None = None,
    sandwich: Sandwich | None = None,
) -> DownstreamKL:
    """The downstream KL on the tokens ``result`` ablated, from their joint curves
    (``prompt_curves``, computed here when not given), within its config's memory budget."""
    if curves is None:
        curves = prompt_curves(model, pair, result, sandwich)
    budget = result.config.memory_budget
    return downstream_kl(model, pair, result.prompt.tokens, curves, memory_budget=budget)


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
    curves: JointCurves | None = None,
    downstream: bool = False,
    true_edges: pd.DataFrame | None = None,
) -> Analysis:
    """Statistics of ``result``'s table at its ε, the pair's health on its tokens, the joint
    ablation's statistics when its ``curves`` are given (``prompt_curves``), with
    ``downstream`` also the next-token KL they imply (``prompt_downstream``), and the
    verdict; with ``true_edges`` (``in_feature``, ``out_feature`` in the pair's feature ids),
    the connections against them."""
    stats = effect_statistics(
        result.table, result.eps, tau=tau, tolerance=tolerance, n_bootstrap=n_bootstrap, seed=seed
    )
    health = prompt_health(model, pair, result, sandwich)
    joint = None
    if curves is not None:
        joint = joint_statistics(curves, result.eps, n_bootstrap=n_bootstrap, seed=seed)
    kl = None
    if curves is not None and downstream:
        kl = prompt_downstream(model, pair, result, curves)
    edges = None if true_edges is None else edge_recovery(result.table, true_edges, result.eps, tau)
    return Analysis(stats, health, verdict(stats, health, joint), joint, kl, edges)
