"""What a view's numbers rest on, said on the page: the verdict's thresholds (read from
``jsae.analysis.verdict``, never retyped) and which of the research notebook's settings the
view reproduces (ε = 0.01, a unit step s = 1, every k×k connection of every token) and
where it departs, with the notebook's reference numbers for Pythia-70m.
"""

from __future__ import annotations

from dataclasses import dataclass

from jsae.analysis.verdict import EXIT_DOMINATED, GOOD_AUC, JOINT_MOVES, STRONG_RATIO, WEAK_RATIO
from jsae.explore.runs import RunKey


@dataclass(frozen=True)
class NotebookReference:
    """The research notebook's run and what it measured (layer 3 of Pythia-70m-deduped,
    858 tokens; README "The paper's pairs").

    Args:
        eps: its ε.
        mode: its perturbation (``unit``: s = 1).
        sampler: the connections it ablated (``all``: every k×k pair of every token).
        unimportant, important: mean |diff| of the connections with |J| below / above ε.
        ratio: important over unimportant.
    """

    eps: float = 0.01
    mode: str = "unit"
    sampler: str = "all"
    unimportant: float = 0.015
    important: float = 0.099
    ratio: float = 6.6


NOTEBOOK = NotebookReference()


def verdict_rule() -> str:
    """The verdict's thresholds in one sentence (``jsae.analysis.verdict``'s constants)."""
    return (
        f"Verdict thresholds: **yes** when important connections move at least "
        f"{STRONG_RATIO:g}× more than unimportant ones, |J| ranks the movement with AUC ≥ "
        f"{GOOD_AUC:g} and top-k exits are under {EXIT_DOMINATED:.0%} of the unimportant "
        f"movement; **partly** from {WEAK_RATIO:g}×; **no** below. Removing the unimportant "
        f"inputs together moving an output by ≥ {JOINT_MOVES:.0%} of its activation turns a "
        f"yes or partly into no."
    )


def research_note(key: RunKey, eps: float, sampler: str = "all") -> str:
    """Which of the notebook's settings the view ``key`` at ε reproduces and where it
    departs, with the notebook's numbers to compare with."""
    same, departs = [], []
    if eps == NOTEBOOK.eps:
        same.append(f"ε = {NOTEBOOK.eps:g}")
    else:
        departs.append(f"ε = {eps:g} (the notebook's: {NOTEBOOK.eps:g})")
    if key.mode == NOTEBOOK.mode:
        same.append("a unit step s = 1")
    else:
        step = "s = aᵢ (zero)" if key.mode == "zero" else f"s = {key.scale:g}"
        departs.append(f"{step} (the notebook's: a unit step s = 1)")
    if sampler == NOTEBOOK.sampler:
        same.append("every k×k connection of every token")
    else:
        departs.append(f"connections sampled by {sampler!r} (the notebook's: all k×k)")
    lines = [
        "**Research settings.** "
        + (f"Reproduces the notebook's {', '.join(same)}." if same else "")
        + (f" Departs: {'; '.join(departs)}." if departs else ""),
        f"The notebook on Pythia-70m (layer 3, 858 tokens): unimportant "
        f"{NOTEBOOK.unimportant:g} vs important {NOTEBOOK.important:g} mean |diff| at ε = "
        f"{NOTEBOOK.eps:g} (ratio {NOTEBOOK.ratio:g}).",
    ]
    return " ".join(line.strip() for line in lines)
