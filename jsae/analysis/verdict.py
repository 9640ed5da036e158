"""The answer the explorer exists for: does this pair's sparse Jacobian mean sparse computation?

One ``Verdict`` per pair and table, built from the ε-free statistics
(``jsae.analysis.effect.EffectStatistics``) and, where known, the pair's health
(``jsae.analysis.health.PairHealth``). The app, the CLI and W&B all show its ``sentence``
and ``reasons``; none recomputes a ratio or an AUC.

The rules, in order:

1. **undetermined** when one side of the ε split is empty (nothing to compare).
2. **no, perverse** ("sparse Jacobian without sparse computation") when most of the
   unimportant connections' movement is top-k exits (``exit_share_unimportant`` ≥
   ``EXIT_DOMINATED``) and either |J| ranks the connections that moved poorly (AUC <
   ``GOOD_AUC``) or the output code is flat (``PairHealth.flat``): the Jacobian is sparse,
   but it does not say where the movement happens. A flat output code or tiny margins are
   named as the reason when present. (A plain pair's few unimportant connections also move
   mostly by exits, but |J| ranks its movement well: that is not this case.)
3. **yes** when the ratio is at least ``STRONG_RATIO``, |J| ranks the movement well (AUC
   ≥ ``GOOD_AUC``) and exits do not dominate the unimportant movement.
4. **yes, competition** when the Jacobian is not dense, |J| ranks the movement well, exits
   dominate the unimportant movement and without them the ratio is at least
   ``STRONG_RATIO``: the unimportant connections' own (continuous) movement is small, and
   what moves them is top-k competition, an output feature pushed out of the top k by one the
   perturbation raised. The planted ``true`` pair is this case: off its true edges J is 0 and
   the continuous part of every diff is 0, and the only movement there is such exits.
5. **partly** when the ratio is at least ``WEAK_RATIO``; **no** below it.
6. When the joint ablation is known (``jsae.analysis.faithfulness.JointStatistics``) and
   removing each output feature's unimportant inputs *together* moves it by at least
   ``JOINT_MOVES`` of its activation, a **yes** or **partly** becomes **no, perverse**: each
   small connection alone barely matters, but together they carry the computation. A **no**
   gains that sentence as its evidence. The faithfulness score is always among the reasons.

Whatever the level, the Jacobian is **dense** (``Verdict.dense``) when at least
``DENSE_FRACTION`` of the connections have |J| > ε: its split then calls most connections
important and says little about where the computation is (a pair whose basis is not the
computation's, like the planted ``rotated`` pair, or the bundle's plain pairs).

The thresholds come from the research notebook (its Pythia-70m JSAE had a ratio of 6.6) and
our bundle (plain pairs: ratio 5.7–6.5, AUC 0.95–0.99, 93–97 % of |J| > 0.01; JSAEs: ratio
1.9–2.1, AUC 0.57–0.59, 93–95 % of the unimportant movement from exits, 19–22 % of |J| >
0.01).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from jsae.analysis.effect import EffectStatistics
from jsae.analysis.faithfulness import JointStatistics
from jsae.analysis.health import PairHealth

STRONG_RATIO = 10.0
"""Unimportant connections move at least this many times less: the split separates them."""
WEAK_RATIO = 2.0
"""Below this ratio the split hardly separates the two sets."""
GOOD_AUC = 0.9
"""|J| ranks the connections that moved (|diff| > τ) above those that did not this well."""
EXIT_DOMINATED = 0.5
"""At least this share of the unimportant connections' movement is top-k exits."""
JOINT_MOVES = 0.2
"""Removing an output feature's unimportant inputs together moves it by at least this share of
its activation: the connections the split calls unimportant add up (our bundled JSAE: 58 %,
its plain pair: 2 %, zero mode at ε 0.01)."""
DENSE_FRACTION = 0.5
"""At least this share of connections with |J| > ε: the Jacobian is dense. The bundle's plain
pairs have 0.93–0.97 at ε = 0.01, its JSAEs 0.19–0.22; the planted true pair 0.15, its
rotated pair 0.95."""
LEVELS = ("yes", "partly", "no", "undetermined")
PERVERSE_LEAD = "Sparse Jacobian without sparse computation"
"""How every face heads a perverse verdict (rule 2)."""
DENSE_LEAD = "Dense Jacobian"
"""How every face heads a dense Jacobian's verdict (when it is not perverse)."""


@dataclass(frozen=True)
class Verdict:
    """The one-line answer, and the numbers behind it.

    Args:
        level: one of ``LEVELS``.
        sentence: the answer in plain words.
        reasons: one sentence per number the answer rests on.
        perverse: a sparse Jacobian without sparse computation (rule 2).
        ratio: mean |diff| of important over unimportant connections.
        dense: at least ``DENSE_FRACTION`` of the connections have |J| > ε.
    """

    level: str
    sentence: str
    reasons: tuple[str, ...]
    perverse: bool
    ratio: float
    dense: bool = False

    @property
    def lead(self) -> str | None:
        """What heads the sentence: ``PERVERSE_LEAD``, else ``DENSE_LEAD`` when dense."""
        if self.perverse:
            return PERVERSE_LEAD
        return DENSE_LEAD if self.dense else None

    @property
    def headline(self) -> str:
        """The sentence, led by ``lead`` when there is one."""
        return f"{self.lead}. {self.sentence}" if self.lead else self.sentence


def _interval(ci: tuple[float, float]) -> str:
    lo, hi = ci
    return "" if math.isnan(lo) or math.isnan(hi) else f" ({lo:.3g}–{hi:.3g})"


def is_dense(fraction_important: float) -> bool:
    """The one rule for a dense Jacobian: ``fraction_important >= DENSE_FRACTION``."""
    return fraction_important >= DENSE_FRACTION


def _reasons(stats: EffectStatistics, health: PairHealth | None) -> tuple[str, ...]:
    pct = int(round(100 * stats.confidence))
    reasons = []
    if is_dense(stats.fraction_important):
        reasons.append(
            f"The Jacobian is dense: {stats.fraction_important:.0%} of connections have |J| > "
            f"ε = {stats.eps:g} (dense from {DENSE_FRACTION:.0%}), so the split calls most "
            "connections important and says little about where the computation is."
        )
    reasons += [
        f"Ratio of mean |diff|, important over unimportant at ε = {stats.eps:g}: "
        f"{stats.ratio:.3g}{_interval(stats.ratio_ci)}; without exits "
        f"{stats.ratio_without_exits:.3g}{_interval(stats.ratio_without_exits_ci)} "
        f"({pct}% intervals over tokens).",
        f"Top-k exits carry {stats.exit_share_unimportant:.0%} of the unimportant connections' "
        f"movement and {stats.exit_mass_share:.0%} of all movement; "
        f"{stats.p_exit:.1%} of connections exit.",
        f"|J| ranks connections that moved (|diff| > {stats.tau:g}) above those that did not "
        f"with AUC {stats.auc:.2f}{_interval(stats.auc_ci)}; Spearman ρ {stats.spearman:.2f}.",
        f"The top {stats.capture_fraction:.0%} of connections by |J| carry {stats.capture:.0%} "
        f"of the movement (at most {stats.capture_oracle:.0%} is possible).",
        f"On the linear prediction −s·J: {stats.on_line_count:.0%} of connections, but only "
        f"{stats.on_line_mass:.0%} of the movement.",
    ]
    moved = stats.unimportant
    if moved.connections:
        reasons.append(
            f"{moved.share:.1%} of the unimportant connections moved by more than "
            f"{stats.tau:g} (at most {moved.upper:.1%}, {pct}% bound)."
        )
    if health is not None:
        reasons.extend(health.warnings)
    return tuple(reasons)


def _bracket(ci: tuple[float, float]) -> str:
    lo, hi = ci
    return "" if math.isnan(lo) or math.isnan(hi) else f" [{lo:.2f}, {hi:.2f}]"


def _joint_reasons(joint: JointStatistics) -> tuple[str, ...]:
    unimp, rand, imp = (joint.of_set(name) for name in ("unimportant", "random", "important"))
    return (
        f"Removed together, an output feature's unimportant inputs (about "
        f"{unimp['mean_size']:.3g} of {joint.k_in}) move it by {unimp['mean_share']:.0%} of its "
        f"activation (|diff| {unimp['mean_abs_diff']:.3g}; it leaves the top k "
        f"{unimp['exit_share']:.0%} of the time); as many random inputs by "
        f"{rand['mean_share']:.0%}; its important inputs by {imp['mean_share']:.0%}.",
        f"Faithfulness score of the |J| order {joint.score:.2f}{_bracket(joint.score_ci)}: "
        "0 is no better than removing inputs at random, 1 as good as the single-connection "
        "oracle.",
    )


def verdict(
    stats: EffectStatistics,
    health: PairHealth | None = None,
    joint: JointStatistics | None = None,
) -> Verdict:
    """Judge one table's statistics (and the pair's health and the joint ablation, when
    known); see the module docstring for the rules."""
    single = _single_verdict(stats, health)
    if joint is None or single.level == "undetermined":
        return single
    reasons = single.reasons + _joint_reasons(joint)
    share = joint.of_set("unimportant")["mean_share"]
    if math.isnan(share) or share < JOINT_MOVES:
        return replace(single, reasons=reasons)
    together = (
        f"together, an output feature's unimportant inputs move it by {share:.0%} of its activation"
    )
    if single.level == "no":
        sentence = f"{single.sentence} Removed {together}."
        return replace(single, sentence=sentence, reasons=reasons)
    sentence = (
        f"No: each small connection alone barely matters (unimportant connections move "
        f"{single.ratio:.1f}× less than important ones), but {together}, so a sparse "
        "Jacobian does not mean sparse computation here."
    )
    return Verdict("no", sentence, reasons, True, single.ratio, single.dense)


def _single_verdict(stats: EffectStatistics, health: PairHealth | None) -> Verdict:
    """Rules 1–5, from the one-connection-at-a-time statistics."""
    eps = f"{stats.eps:g}"
    n_important = round(stats.fraction_important * stats.n_connections)
    reasons = _reasons(stats, health)
    dense = is_dense(stats.fraction_important)
    if stats.n_connections == 0 or n_important == 0:
        return Verdict(
            "undetermined",
            f"No connection has |J| > ε = {eps}, so there is nothing to compare: lower ε.",
            reasons,
            False,
            stats.ratio,
        )
    if n_important == stats.n_connections:
        return Verdict(
            "undetermined",
            f"Every connection has |J| > ε = {eps}, so there is nothing to compare: raise ε.",
            reasons,
            False,
            stats.ratio,
            dense,
        )
    exits = stats.exit_share_unimportant
    dominated = not math.isnan(exits) and exits >= EXIT_DOMINATED
    poor_ranking = math.isnan(stats.auc) or stats.auc < GOOD_AUC
    flat = health is not None and health.flat
    if dominated and (poor_ranking or flat):
        cause = ""
        if health is not None and (health.flat or health.tiny_margins):
            cause = (
                " The output code is nearly binary (a token's active output features have "
                f"almost equal activations, CV {health.output_cv:.2f}), so what it encodes is "
                "which features are selected, and small pushes swap them."
            )
        sentence = (
            f"No: only "
            f"{stats.fraction_important:.0%} of connections have |J| > ε = {eps}, but the "
            f"Jacobian does not locate where the movement happens. {exits:.0%} of the "
            "unimportant connections' movement is top-k swaps (output features pushed out of "
            f"the top k), which no derivative sees, and |J| ranks the connections that moved "
            f"with AUC {stats.auc:.2f}." + cause
        )
        return Verdict("no", sentence, reasons, True, stats.ratio, dense)
    ratio = stats.ratio
    if ratio >= STRONG_RATIO and not poor_ranking and not dominated:
        sentence = (
            "Yes: unimportant connections barely move "
            + ("at all" if math.isinf(ratio) else f"({ratio:,.0f}× less than important ones)")
            + f", and |J| ranks the connections that moved well (AUC {stats.auc:.2f})."
        )
        return Verdict("yes", sentence, reasons, False, ratio, dense)
    without = stats.ratio_without_exits
    if dominated and not poor_ranking and not dense and without >= STRONG_RATIO:
        sentence = (
            "Yes, the Jacobian's sparsity is sound: without top-k exits the unimportant "
            "connections "
            + (
                "do not move at all"
                if math.isinf(without)
                else f"move {without:,.0f}× less than important ones"
            )
            + f", and |J| ranks the connections that moved with AUC {stats.auc:.2f}. What "
            f"moves them ({exits:.0%} of their movement) is top-k competition: an output "
            "feature pushed out of the top k by another one the perturbation raised, a "
            "selection by the output SAE that no derivative of the feature itself sees."
        )
        return Verdict("yes", sentence, reasons, False, ratio, dense)
    if ratio >= WEAK_RATIO:
        sentence = (
            f"Partly: unimportant connections move {ratio:.1f}× less than important ones at "
            f"ε = {eps}, and |J| ranks the connections that moved with AUC {stats.auc:.2f}."
        )
        return Verdict("partly", sentence, reasons, False, ratio, dense)
    sentence = (
        f"No: unimportant connections move about as much as important ones (ratio "
        f"{ratio:.2g} at ε = {eps})."
    )
    return Verdict("no", sentence, reasons, False, ratio, dense)
