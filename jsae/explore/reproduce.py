"""Reproduce this view: the Python snippet and the ``jsae ablate`` command line that compute
the numbers a run's page shows, built from the view's resolved settings (its ``RunKey``:
source, model, layer, pair kind, mode, scale, sampler and prompt text, and its ε, τ and
tolerance).

Both go through the same public calls the app makes: ``load_source``, ``ablate`` split at ε,
``jsae.sampler.sample_result`` when the view keeps only some connections of each token,
``analyse`` with the source's true edges and the joint ablation's curves (``prompt_curves``,
which removes every input of the ablated tokens whatever the sampler kept; ``--joint`` on the
command line), and ``summarize`` at the view's tolerance. So the snippet's ``summary`` (mean |diff| of |J| > ε and |J| ≤ ε) and
``analysis.statistics.ratio`` are the page's metrics, and the command prints them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from jsae.analysis.statistics import DEFAULT_TAU
from jsae.explore.runs import RunKey
from jsae.stats import Tolerance
from jsae.table import check_eps


@dataclass(frozen=True)
class Reproduction:
    """How to recompute a view's run outside the app.

    Args:
        key: the run's settings (the view's layer and prompt as the source resolved them).
        eps: the |J| threshold of the split.
        tau: the statistics' movement threshold (a connection moved when |diff| > τ).
        tolerance: the summary's "within tolerance" rule.
        max_tokens: the prompt's token limit, BOS included (a hosted app's), or None.
    """

    key: RunKey
    eps: float
    tau: float = DEFAULT_TAU
    tolerance: Tolerance = Tolerance()
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        check_eps(self.eps)

    def python(self) -> str:
        """A self-contained Python snippet; it leaves ``result``, ``summary`` and
        ``analysis`` behind and prints the summary, the ratio and the verdict."""
        key = self.key
        model_arg = f", model={key.model!r}" if key.model else ""
        limit = f", max_tokens={self.max_tokens}" if self.max_tokens is not None else ""
        config = f"AblationConfig(mode={key.mode!r}, scale={float(key.scale)!r})"
        names = "AblationConfig, Tolerance, ablate, analyse, load_source, summarize"
        sampled = key.pairs != "all"
        imports = [f"from jsae import {names}", "from jsae.analysis import prompt_curves"]
        if sampled:
            imports.append("from jsae.sampler import PairSampler, sample_result")
        lines = [
            *imports,
            "",
            f"source = load_source({key.source!r}{model_arg})",
            f"layer, kind = {key.layer}, {key.kind!r}",
            "model, pair = source.model_for(layer, kind), source.pair(layer, kind)",
            f"text = {key.text!r}",
            f"result = ablate(model, pair, text, eps={float(self.eps)!r}, config={config}{limit})",
        ]
        if sampled:  # the joint curves still remove every input of the tokens it ablated
            sampler = f"PairSampler({key.pairs!r}, {int(key.seed)})"
            lines.append(f"result = sample_result(result, {sampler})")
        lines += [
            "analysis = analyse(",
            f"    model, pair, result, tau={float(self.tau)!r}, "
            "curves=prompt_curves(model, pair, result),",
            "    true_edges=source.true_edges(layer, kind),",
            ")",
            f"summary = summarize(result.table, {self._tolerance()})",
            "print(summary)",
            'print("ratio important/unimportant:", analysis.statistics.ratio)',
            "print(analysis.verdict.headline)",
        ]
        return "\n".join(lines) + "\n"

    def _tolerance(self) -> str:
        tol = self.tolerance
        return f"Tolerance(atol={float(tol.atol)!r}, rtol={float(tol.rtol)!r})"

    def cli_args(self) -> list[str]:
        """The arguments of ``jsae ablate`` (after the command's name)."""
        key = self.key
        args = ["--source", key.source]
        if key.model:
            args += ["--model", key.model]
        args += ["--layer", str(key.layer), "--pair", key.kind, "--mode", key.mode]
        if key.mode == "scale":
            args += ["--scale", repr(float(key.scale))]
        if key.pairs != "all":
            args += ["--pairs", key.pairs, "--seed", str(int(key.seed))]
        args += ["--eps", repr(float(self.eps)), "--tau", repr(float(self.tau))]
        args += ["--atol", repr(float(self.tolerance.atol))]
        args += ["--rtol", repr(float(self.tolerance.rtol))]
        if self.max_tokens is not None:  # BOS is never ablated: the same tokens are
            args += ["--max-tokens", str(max(1, self.max_tokens - 1))]
        return [*args, "--joint", "--prompt", key.text]

    def cli(self) -> str:
        """The ``jsae ablate`` command line, quoted for a POSIX shell."""
        return shlex.join(["jsae", "ablate", *self.cli_args()])
