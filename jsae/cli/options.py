"""Arguments more than one command shares, and turning flags into the library's values.

Choices and defaults come from the library (``jsae.stats.Tolerance``, ``jsae.wandb_log``,
``jsae.table``), so the help always shows what the library will do. Every check raises
``InputError``, which ``main`` prints as one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd

from jsae.ablation import AblationConfig
from jsae.analysis import DEFAULT_TAU, N_BOOTSTRAP, ORDERS, EdgeRecovery, JointStatistics
from jsae.analysis.downstream import KEEP_ORDERS, DownstreamKL
from jsae.errors import InputError, os_reason
from jsae.stats import Tolerance, format_summary, importance_ratio
from jsae.table import table_format
from jsae.wandb_log import DEFAULT_PROJECT, WANDB_MODES, WandbTarget, preflight


def add_refresh_argument(parser: argparse.ArgumentParser) -> None:
    """``--refresh``: download a W&B source again even when the cache has it."""
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="download a W&B artifact source again even when the cache holds it",
    )


def add_tolerance_arguments(parser: argparse.ArgumentParser) -> None:
    """``--atol`` and ``--rtol``: when a diff counts as matching −s·J."""
    parser.add_argument(
        "--atol", type=float, default=Tolerance.atol, help="tolerance vs −s·J (absolute)"
    )
    parser.add_argument(
        "--rtol", type=float, default=Tolerance.rtol, help="tolerance vs −s·J (relative)"
    )


def add_statistics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tau`` and ``--bootstrap``: the ε-free statistics' movement threshold and intervals."""
    parser.add_argument(
        "--tau",
        type=float,
        default=DEFAULT_TAU,
        help=f"a connection moved when |diff| > tau (AUC, audit; default: {DEFAULT_TAU:g})",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=N_BOOTSTRAP,
        help=f"token resamples behind the intervals, 0 for none (default: {N_BOOTSTRAP})",
    )


def format_statistics(frame: pd.DataFrame) -> str:
    """An ``Analysis.summary()`` as plain text: value and interval per statistic."""

    def shown(value: float) -> str:
        return "—" if value != value else f"{value:.4g}"

    lines = []
    for row in frame.itertuples(index=False):
        interval = (
            "" if row.ci_low != row.ci_low else f"  [{shown(row.ci_low)}, {shown(row.ci_high)}]"
        )
        lines.append(f"  {row.statistic:<28} {shown(row.value):>10}{interval}")
    return "\n".join(lines)


def format_joint(joint: JointStatistics) -> str:
    """A joint ablation's sets, curves and score as plain text (``jsae ablate --joint``)."""
    lines = [
        f"  {'set':<12} {'inputs':>7} {'mean |diff|':>12} {'share of j':>11} "
        f"{'j left top k':>13} {'additivity gap':>15}"
    ]
    for row in joint.sets.itertuples(index=False):
        lines.append(
            f"  {row.set:<12} {row.mean_size:>7.3g} {row.mean_abs_diff:>12.4g} "
            f"{row.mean_share:>11.1%} {row.exit_share:>13.1%} {row.mean_additivity_gap:>15.4g}"
        )
    marks = sorted({0, joint.k_in // 4, joint.k_in // 2, 3 * joint.k_in // 4, joint.k_in})
    lines.append(
        "  mean |diff| with the first m inputs of each order removed, m = "
        + ", ".join(str(m) for m in marks)
        + ":"
    )
    curves = joint.curves.set_index(["order", "m"])["mean_abs_diff"]
    for order in ORDERS:
        values = " ".join(f"{curves[(order, m)]:>8.4g}" for m in marks)
        lines.append(f"    {order:<9} {values}")
    lo, hi = joint.score_ci
    interval = "" if lo != lo else f" [{lo:.3g}, {hi:.3g}]"
    lines.append(f"faithfulness score: {joint.score:.3g}{interval}")
    return "\n".join(lines)


def format_downstream(kl: DownstreamKL) -> str:
    """A downstream KL's areas and N× per order as plain text (``jsae ablate --joint``)."""
    area, relative, fewer = kl.area, kl.relative_area, kl.fewer_than_random
    lines = [f"  {'keep by':<10} {'area':>10} {'relative area':>14} {'N× fewer than random':>21}"]
    for order in KEEP_ORDERS:
        n = f"{fewer[order]:.3g}" if order in fewer else "—"
        lines.append(f"  {order:<10} {area[order]:>10.4g} {relative[order]:>14.4g} {n:>21}")
    none_kept = kl.table.query("m_kept == 0")["kl_mean"].iloc[0]
    lines.append(f"  with no input kept: mean KL {none_kept:.4g}")
    return "\n".join(lines)


def tolerance(args: argparse.Namespace) -> Tolerance:
    return Tolerance(atol=args.atol, rtol=args.rtol)


def add_wandb_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Weights & Biases")
    group.add_argument(
        "--wandb",
        action="store_true",
        help="log the configuration, summary, histogram and results to W&B (API key from "
        "`wandb login` or WANDB_API_KEY)",
    )
    group.add_argument(
        "--wandb-project",
        default=DEFAULT_PROJECT,
        help=f"W&B project (default: {DEFAULT_PROJECT})",
    )
    group.add_argument("--wandb-entity", help="W&B entity (default: your default entity)")
    group.add_argument(
        "--wandb-mode",
        choices=WANDB_MODES,
        help="online, or offline to upload later with `wandb sync` (default: WANDB_MODE, "
        "else online)",
    )
    group.add_argument("--wandb-dir", type=Path, help="where wandb keeps its local files")


def wandb_target(args: argparse.Namespace) -> WandbTarget:
    """The ``--wandb-*`` flags: where ``log_to_wandb`` / ``log_corpus_to_wandb`` log."""
    return WandbTarget(
        project=args.wandb_project,
        entity=args.wandb_entity,
        mode=args.wandb_mode,
        dir=args.wandb_dir,
    )


def check_wandb(args: argparse.Namespace) -> None:
    """With --wandb, fail before the work when logging could not start (no key online)."""
    if args.wandb:
        preflight(args.wandb_mode)


def resolve_mode(mode: str | None, scale: float | None) -> tuple[str, float]:
    """The ablation mode and s from ``--mode`` and ``--scale`` (``--scale`` implies scale)."""
    if scale is None:
        if mode == "scale":
            raise InputError("--mode scale needs --scale S (the perturbation size).")
        return mode or AblationConfig.mode, AblationConfig.scale
    if mode not in (None, "scale"):
        raise InputError(
            f"--scale sets the perturbation size itself; drop --mode {mode} or drop --scale."
        )
    return "scale", scale


def read_prompt(args: argparse.Namespace) -> str:
    """The text of ``--prompt`` or of ``--prompt-file``."""
    if args.prompt is not None:
        return args.prompt
    try:
        return args.prompt_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"Prompt file {args.prompt_file} does not exist.") from None
    except (UnicodeDecodeError, IsADirectoryError, PermissionError) as err:
        raise InputError(f"Prompt file {args.prompt_file} cannot be read as text: {err}") from None


def check_output(path: Path | None) -> None:
    """A table ``--output`` must end in one of the table formats and be writable."""
    if path is not None:
        table_format(path, what="--output")
        check_writable(path, "--output")


def check_writable(path: Path, flag: str, folder: bool = False) -> None:
    """Fail before any work when ``path`` (a file, or a ``folder``) could not be written: a
    folder on its way that is a file, or a folder that takes no new files."""
    path = path.expanduser()
    if path.is_dir() and not folder:
        raise InputError(f"{flag} {path} is a folder; name a file in it.")
    if path.exists() and not path.is_dir() and folder:
        raise InputError(f"{flag} {path} is a file; it must be a folder.")
    nearest = path if folder else path.parent
    while not nearest.exists() and nearest != nearest.parent:
        nearest = nearest.parent  # the closest folder that exists: where the writing starts
    if not nearest.is_dir():
        raise InputError(f"{flag} {path} cannot be written: {nearest} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as err:
        raise InputError(
            f"{flag} {path} cannot be written: {os_reason(err)} (in {nearest})."
        ) from None
    if path.is_file() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path} cannot be written: it is read-only.")


def check_positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise InputError(f"{flag} must be a positive integer, got {value}.")


DECOMPOSITION_LABELS = {
    "p_exit": "P(exit)",
    "exit_mass_share": "Exits' share of |diff|",
    "mean_abs_diff_without_exits": "Mean |diff| without exits",
    "on_line_mass_share": "Within tolerance, by |diff|",
}


def format_decomposition(frame: pd.DataFrame) -> str:
    """The decomposition table (rows: experiments) as plain text, experiments side by side."""
    shown = frame.rename(columns=DECOMPOSITION_LABELS).T
    shown.columns = [str(c).capitalize() for c in shown.columns]
    return shown.map(lambda v: "—" if v != v else f"{v:.4g}").to_string()


def format_recovery(recovery: EdgeRecovery) -> str:
    """``EdgeRecovery.table`` as plain text (precision and recall per rule), then the off-edge
    movement in a sentence."""
    shown = recovery.table.set_index("rule")
    shown.index = [
        f"{rule} (|J| > {recovery.eps:g})"
        if rule == "important"
        else f"{rule} (|diff| > {recovery.tau:g})"
        for rule in shown.index
    ]
    text = shown.to_string(
        formatters={"precision": "{:.4f}".format, "recall": "{:.4f}".format}, index_names=False
    )
    off = recovery.off_edge_sentence()
    return text + (f"\n{off}" if off else "")


def print_summary(summary: pd.DataFrame, tol: Tolerance) -> None:
    """The two experiments' summary table, their ratio and the tolerance it used."""
    print(format_summary(summary))
    print(f"\nmean |diff| important / unimportant: {importance_ratio(summary):.3g}")
    print(f"within tolerance: |diff − (−s·J)| <= {tol.atol:g} + {tol.rtol:g}·|s·J|")
