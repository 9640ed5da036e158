"""Running a corpus job (here or on Ray) and reading its statistics back from the shards.

``run_corpus`` opens the corpus and the output folder, plans the shards still to do and hands
them to an engine: ``_run_local`` ablates them in this process, ``run_units_on_ray`` on a Ray
cluster. Either way each finished shard is recorded in the manifest as it lands, so rerunning
the same command resumes; the run holds the folder's ``claim_output`` throughout, so a second
run on it is refused at once. ``corpus_stats`` streams every finished shard (each checked
against the manifest) into the mergeable statistics of ``jsae.corpus.mergeable``, at any ε
(the shards keep every connection's Jacobian).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jsae.analysis.faithfulness import JointStatistics, JointSums
from jsae.corpus.engine import WindowEngine
from jsae.corpus.job import DEFAULT_ENGINE, ENGINES, CorpusError, CorpusJob, CorpusProgress
from jsae.corpus.lock import claim_output
from jsae.corpus.manifest import Manifest, ShardEntry, read_manifest
from jsae.corpus.mergeable import CorpusStats
from jsae.corpus.plan import DoneSet, Unit
from jsae.corpus.ray import RayConfig, check_ray, run_units_on_ray
from jsae.corpus.reader import Corpus, open_corpus
from jsae.corpus.store import (
    JOINT_METADATA,
    check_output_folder,
    open_output,
    verified_shards,
    write_shard,
)
from jsae.errors import InputError, first_line
from jsae.stats import Tolerance
from jsae.table import check_eps


@dataclass
class CorpusRun:
    """What a corpus run did.

    Args:
        output: the output folder.
        manifest: its manifest after the run.
        shards: shards written by this run.
        tokens, windows, rows: ablated by this run.
        seconds: wall time of this run's ablation (source loading excluded).
        finished: whether the corpus (or ``max_tokens``) is exhausted.
    """

    output: Path
    manifest: Manifest
    shards: int
    tokens: int
    windows: int
    rows: int
    seconds: float
    finished: bool

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else math.nan


def run_corpus(
    job: CorpusJob,
    *,
    engine: str = DEFAULT_ENGINE,
    ray_config: RayConfig | None = None,
    progress: CorpusProgress | None = None,
    max_windows: int | None = None,
) -> CorpusRun:
    """Ablate a corpus into ``job.output``, resuming whatever an earlier run finished.

    Args:
        job: the run.
        engine: ``"local"`` (this process) or ``"ray"`` (a Ray cluster; ``jsae[ray]``).
        ray_config: where and how wide to run on Ray (None: ``RayConfig()``).
        progress: called with (tokens done over all runs, max_tokens or None).
        max_windows: stop after this many new windows (for tests and dry runs).
    """
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if engine == "ray":
        check_ray()  # before anything is loaded or written
    corpus = open_corpus(job.dataset, job.text_column, job.split)
    check_output_folder(job.output)  # before the claim creates anything in it
    with claim_output(job.output):
        return _run(job, corpus, engine, ray_config, progress, max_windows)


def _run(
    job: CorpusJob,
    corpus: Corpus,
    engine: str,
    ray_config: RayConfig | None,
    progress: CorpusProgress | None,
    max_windows: int | None,
) -> CorpusRun:
    """``run_corpus`` once the output folder is claimed."""
    local = WindowEngine(job)
    info = {
        "dataset": str(job.dataset.resolve()),
        "source": job.source,
        "shard_tokens": local.shard_tokens,
    }
    manifest = open_output(job.output, local.identity(corpus), info)
    before = manifest.tokens
    shards_before, windows_before, rows_before = (
        len(manifest.shards),
        manifest.windows,
        manifest.rows,
    )
    status: dict[str, bool] = {}
    units = local.plan(
        corpus,
        DoneSet(manifest.shards),
        first_shard=manifest.next_shard(),
        tokens_before=before,
        max_windows=max_windows,
        status=status,
    )
    start = time.perf_counter()
    if engine == "ray":

        def on_shard(entry: ShardEntry) -> None:
            manifest.add(entry)
            if progress is not None:
                progress(manifest.tokens, job.max_tokens)

        run_units_on_ray(job, units, on_shard, ray_config)
    else:
        _run_local(local, units, manifest, progress)
    seconds = time.perf_counter() - start
    return CorpusRun(
        output=job.output,
        manifest=manifest,
        shards=len(manifest.shards) - shards_before,
        tokens=manifest.tokens - before,
        windows=manifest.windows - windows_before,
        rows=manifest.rows - rows_before,
        seconds=seconds,
        finished=status.get("finished", False),
    )


def _run_local(
    engine: WindowEngine,
    units: Iterator[Unit],
    manifest: Manifest,
    progress: CorpusProgress | None,
) -> None:
    """Ablate ``units`` in this process, recording each shard in ``manifest`` as it lands."""
    tokens = manifest.tokens
    max_tokens = engine.job.max_tokens

    def tick(n: int) -> None:
        nonlocal tokens
        tokens += n
        if progress is not None:
            progress(tokens, max_tokens)

    for unit in units:
        table, n = engine.run_unit(unit, tick)
        manifest.add(write_shard(engine.job.output, unit, table, n))


def corpus_stats(
    output: str | os.PathLike,
    eps: float | None = None,
    tolerance: Tolerance | None = None,
    batch_rows: int = 1 << 20,
) -> CorpusStats:
    """Statistics of every finished shard at ``eps`` (None: the run's ε), streamed in record
    batches of ``batch_rows``; never holds more than one batch in memory."""
    manifest = read_manifest(output)
    eps = check_eps(manifest.config["eps"] if eps is None else eps)
    stats = CorpusStats(eps, tolerance or Tolerance())
    for path, _ in verified_shards(output, manifest):
        try:
            reader = pq.ParquetFile(path)
            batches = reader.iter_batches(
                batch_size=batch_rows, columns=["jacobian", "predicted", "diff", "exited"]
            )
            for batch in batches:
                stats = stats.merge(
                    CorpusStats.of(
                        batch.column("jacobian").to_numpy(),
                        batch.column("predicted").to_numpy(),
                        batch.column("diff").to_numpy(),
                        eps,
                        stats.tolerance,
                        exited=batch.column("exited").to_numpy(zero_copy_only=False),
                    )
                )
        except (OSError, pa.ArrowInvalid) as err:
            raise CorpusError(f"Could not read the shard {path}: {first_line(err)}") from None
    return stats


def corpus_joint(output: str | os.PathLike) -> JointStatistics | None:
    """The joint ablation's statistics of a ``--joint`` run, merged exactly over its finished
    shards at the run's ε (the sets cannot be re-split at another ε: they are sums); no
    interval for the score (a bootstrap does not merge). None for a run without ``--joint``."""
    manifest = read_manifest(output)
    if not manifest.config.get("joint"):
        return None
    merged: JointSums | None = None
    for path, _ in verified_shards(output, manifest):
        try:
            metadata = pq.read_schema(path).metadata or {}
            sums = JointSums.from_dict(json.loads(metadata[JOINT_METADATA.encode()]))
        except KeyError:
            raise CorpusError(
                f"The shard {path} of a --joint run holds no joint sums: use a new --output folder."
            ) from None
        except (OSError, pa.ArrowInvalid, ValueError, TypeError) as err:
            raise CorpusError(
                f"Could not read the joint sums of {path}: {first_line(err)}"
            ) from None
        merged = sums if merged is None else merged.merge(sums)
    return None if merged is None else merged.statistics()
