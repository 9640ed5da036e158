"""Logging an ablation to Weights & Biases: one function for the app and the CLI.

A run gets

* the configuration (source, layer, pair kind, mode, scale, ε, tolerance, tokens, k's),
* the summary statistics of both experiments and the important/unimportant ratio (run summary,
  keys like ``important/mean_abs_diff`` and ``importance_ratio``),
* the histogram of diff per experiment as a ``wandb.Table`` (``diff_histogram``: bin_left,
  bin_right, important, unimportant; bins computed with numpy),
* the per-connection table as an artifact (``connections.parquet``).

The API key is wandb's business: it reads ``WANDB_API_KEY`` or ``~/.netrc`` itself; jsae never
reads, prints or logs it. In offline mode (``mode="offline"`` or ``WANDB_MODE=offline``) nothing
leaves the machine; the run is written under ``dir`` and can be uploaded later with
``wandb sync DIR``.
"""

from __future__ import annotations

import contextlib
import math
import netrc
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from jsae.ablation import AblationResult
from jsae.analysis import Analysis
from jsae.corpus import CorpusRun, CorpusStats, read_manifest
from jsae.errors import JSAEError, first_line
from jsae.histogram import experiment_diffs, shared_counts
from jsae.sampler import PairSampler
from jsae.stats import Tolerance, importance_ratio, summarize
from jsae.table import write_table

DEFAULT_PROJECT = "jsae-explorer"
WANDB_MODES = ("online", "offline")
HISTOGRAM_BINS = 50


class WandbLogError(JSAEError):
    """Logging to W&B failed: no network, no API key, a bad project or mode."""


@dataclass(frozen=True)
class WandbTarget:
    """Where and how a run is logged.

    Args:
        project, entity: where the run goes (entity None: your default).
        mode: ``"online"`` or ``"offline"`` (None: ``WANDB_MODE``, else online).
        dir: where wandb writes its local files (None: wandb's default, ./wandb).
        name: the run's display name (None: W&B picks one).
        timeout: seconds to wait for the W&B server when starting the run.
    """

    project: str = DEFAULT_PROJECT
    entity: str | None = None
    mode: str | None = None
    dir: str | os.PathLike | None = None
    name: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class WandbRun:
    """Where a logged run went.

    Args:
        mode: ``"online"`` or ``"offline"``.
        run_id: the W&B run id.
        url: the run's page (online mode; None offline).
        dir: the run's local folder (``.../wandb/offline-run-...`` or ``run-...``).
        artifact: the name of the logged artifact.
    """

    mode: str
    run_id: str
    url: str | None
    dir: Path
    artifact: str

    def describe(self) -> str:
        """One line for the user."""
        if self.url:
            return f"logged to W&B: {self.url}"
        return f"logged to W&B offline in {self.dir} (upload later with `wandb sync {self.dir}`)"


def resolve_mode(mode: str | None) -> str:
    """``mode``, else ``WANDB_MODE``, else ``"online"``; only online and offline are allowed."""
    chosen = mode or os.environ.get("WANDB_MODE") or "online"
    if chosen not in WANDB_MODES:
        raise WandbLogError(
            f"W&B mode must be online or offline, got {chosen!r}"
            + (" (from WANDB_MODE)" if not mode else "")
            + "."
        )
    return chosen


def histogram(table: pd.DataFrame, bins: int = HISTOGRAM_BINS) -> pd.DataFrame:
    """diff per experiment on ``bins`` equal bins spanning all finite diffs
    (``histogram.shared_counts``): columns bin_left, bin_right, important, unimportant
    (counts), every bin, empty ones included."""
    diff = table["diff"].to_numpy(dtype=np.float64)
    finite = diff[np.isfinite(diff)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges, counts = shared_counts(experiment_diffs(table), (lo, hi), bins)
    return pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], **counts})


def summary_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """The summary as flat W&B summary keys (``important/mean_abs_diff``, ...)."""
    metrics: dict[str, float] = {}
    for experiment, row in summary.iterrows():
        for column, value in row.items():
            metrics[f"{experiment}/{column}"] = (
                int(value) if column == "connections" else _finite_or_none(value)
            )
    metrics["importance_ratio"] = _finite_or_none(importance_ratio(summary))
    return metrics


def analysis_metrics(analysis: Analysis | None) -> dict[str, Any]:
    """An ``Analysis`` as flat W&B summary keys: every statistic (with its interval) and the
    verdict, exactly as the app and the CLI show them."""
    if analysis is None:
        return {}
    metrics: dict[str, Any] = {}
    for row in analysis.summary().itertuples(index=False):
        metrics[f"analysis/{row.statistic}"] = _finite_or_none(row.value)
        if row.ci_low == row.ci_low:  # not NaN: the statistic has an interval
            metrics[f"analysis/{row.statistic}_ci_low"] = _finite_or_none(row.ci_low)
            metrics[f"analysis/{row.statistic}_ci_high"] = _finite_or_none(row.ci_high)
    found = analysis.verdict
    metrics |= {
        "verdict/level": found.level,
        "verdict/perverse": found.perverse,
        "verdict/sentence": found.sentence,
    }
    return metrics


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def log_to_wandb(
    result: AblationResult,
    *,
    source_name: str,
    eps: float | None = None,
    tolerance: Tolerance | None = None,
    target: WandbTarget | None = None,
    analysis: Analysis | None = None,
) -> WandbRun:
    """Log one prompt's ablation (a ``jsae.ablation.AblationResult``) as a W&B run.

    Args:
        result: what ``jsae.ablate`` returned.
        source_name: the source it was run on (for the configuration; the result knows
            its own layer, pair kind and k_in, k_out).
        eps: split at this ε (None: the result's own).
        tolerance: the within-tolerance rule (None: ``Tolerance()``).
        target: where and how to log (None: ``WandbTarget()``).
        analysis: ``jsae.analysis.analyse``'s result for this table, whose statistics
            (``analysis/<statistic>``, intervals as ``_ci_low``/``_ci_high``) and verdict
            (``verdict/level``, ``verdict/perverse``, ``verdict/sentence``) join the summary.

    Raises:
        WandbLogError: no network, no API key (online), or anything else W&B refuses.
    """
    if eps is not None and eps != result.eps:
        result = result.with_eps(eps)
    tolerance = tolerance or Tolerance()
    table = result.table
    summary = summarize(table, tolerance)
    config = {
        "source": str(source_name),
        "layer": int(result.layer),
        "pair": result.kind,
        "mode": result.config.mode,
        "scale": result.config.step,
        "include_bos": result.config.include_bos,
        "eps": float(result.eps),
        "atol": tolerance.atol,
        "rtol": tolerance.rtol,
        "tokens": int(result.n_tokens),
        "k_in": int(result.k_in),
        "k_out": int(result.k_out),
        "connections": len(table),
        "prompt_tokens": len(result.prompt.tokens),
        "prompt_dropped": int(result.prompt.dropped),
        **PairSampler.of(result.provenance).record(),  # as the artifact's provenance says
    }
    with tempfile.TemporaryDirectory(prefix="jsae-wandb-") as tmp:
        parquet = Path(tmp) / "connections.parquet"
        write_table(table, parquet, "parquet", result.provenance.replace(source=str(source_name)))
        return log_run(
            config=config,
            metrics=summary_metrics(summary) | analysis_metrics(analysis),
            histogram_table=histogram(table),
            files={"connections.parquet": parquet},
            artifact_type="ablation-connections",
            artifact_prefix="connections",
            job_type="ablate",
            target=target or WandbTarget(),
        )


def log_corpus_to_wandb(
    output: str | os.PathLike,
    stats: CorpusStats,
    *,
    run: CorpusRun | None = None,
    target: WandbTarget | None = None,
) -> WandbRun:
    """Log a corpus run's merged statistics (a ``jsae.corpus.CorpusStats``): the manifest's
    configuration, the summary, the |diff| histogram on the log grid, and ``manifest.json`` as
    an artifact (the shards stay where they are). ``run`` is the ``jsae.corpus.CorpusRun``, if
    one just finished (adds its throughput)."""
    manifest = read_manifest(output)
    config = {
        **{k: v for k, v in manifest.config.items() if v is not None},
        **{f"info/{k}": v for k, v in manifest.info.items()},
        "stats_eps": stats.eps,
        "atol": stats.tolerance.atol,
        "rtol": stats.tolerance.rtol,
        "tokens": manifest.tokens,
        "windows": manifest.windows,
        "connections": manifest.rows,
        "shards": len(manifest.shards),
    }
    metrics = summary_metrics(stats.summary())
    if run is not None:
        metrics["tokens_per_second"] = _finite_or_none(run.tokens_per_second)
    return log_run(
        config=config,
        metrics=metrics,
        histogram_table=stats.histogram("abs"),
        files={"manifest.json": manifest.path},
        artifact_type="corpus-manifest",
        artifact_prefix="corpus",
        job_type="ablate-corpus",
        target=target or WandbTarget(),
        histogram_key="abs_diff_histogram",
    )


def log_run(
    *,
    config: dict[str, Any],
    metrics: dict[str, Any],
    histogram_table: pd.DataFrame,
    files: dict[str, Path],
    artifact_type: str,
    artifact_prefix: str,
    job_type: str,
    target: WandbTarget,
    histogram_key: str = "diff_histogram",
) -> WandbRun:
    """Start a run, log config, summary, histogram table and an artifact, finish it."""
    mode = preflight(target.mode)
    import wandb

    dir = target.dir
    if dir is not None:
        Path(dir).mkdir(parents=True, exist_ok=True)
    run = None
    try:
        run = wandb.init(
            project=target.project,
            entity=target.entity,
            mode=mode,
            dir=str(dir) if dir is not None else None,
            name=target.name,
            job_type=job_type,
            config=config,
            reinit="create_new",
            settings=wandb.Settings(
                silent=True,
                console="off",
                disable_git=True,
                x_disable_stats=True,
                init_timeout=target.timeout,
            ),
        )
        run.summary.update(metrics)
        run.log({histogram_key: wandb.Table(dataframe=histogram_table)})
        artifact = wandb.Artifact(f"{artifact_prefix}-{run.id}", type=artifact_type)
        for file_name, path in files.items():
            artifact.add_file(str(path), name=file_name)
        run.log_artifact(artifact)
        info = WandbRun(
            mode=mode,
            run_id=run.id,
            url=run.url if mode == "online" else None,
            dir=Path(run.dir).parent,
            artifact=artifact.name,
        )
        run.finish()
        run = None
        return info
    except (KeyboardInterrupt, JSAEError):
        raise
    except Exception as err:  # wandb raises UsageError, CommError, AuthenticationError, ...
        raise WandbLogError(_explain(err, mode)) from None
    finally:
        if run is not None:  # the run is broken; the first error is the one to show
            with contextlib.suppress(Exception):
                run.finish(exit_code=1)


def preflight(mode: str | None = None) -> str:
    """Check before any work that logging can start: a valid mode, wandb installed, and in
    online mode an API key wandb will find. Returns the resolved mode."""
    mode = resolve_mode(mode)
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise WandbLogError("Logging to W&B needs the wandb package: pip install wandb.") from None
    if mode == "online" and not has_credentials():
        raise WandbLogError(
            "No W&B API key found: run `wandb login` once, or set the WANDB_API_KEY "
            "environment variable; or log offline (--wandb-mode offline, WANDB_MODE=offline) "
            "and upload later with `wandb sync`."
        )
    return mode


def has_credentials() -> bool:
    """Whether wandb will find credentials for the server without prompting: the
    WANDB_API_KEY or WANDB_IDENTITY_TOKEN_FILE variables, or a ``.netrc`` entry for the server
    (what ``wandb login`` writes). Only presence is checked; nothing is printed or kept."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path).authenticators(host or "") is not None
    except netrc.NetrcParseError:  # a .netrc netrc cannot parse: let wandb judge it
        return True
    except OSError:
        return False


def _explain(err: Exception, mode: str) -> str:
    text = first_line(err)
    hint = (
        "Check your network, and that an API key is set up (`wandb login`, or the "
        "WANDB_API_KEY environment variable); or log offline (--wandb-mode offline, "
        "WANDB_MODE=offline) and upload later with `wandb sync`."
        if mode == "online"
        else "Check that the W&B folder is writable."
    )
    return f"Could not log to W&B ({mode}): {text}. {hint}"
