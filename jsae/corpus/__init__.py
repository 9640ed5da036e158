"""Corpus-scale ablation: the engine over a whole corpus, as resumable Parquet shards.

A corpus is a UTF-8 text file, a folder of ``.txt`` files (sorted by path; each file is a
document), or a Hugging Face dataset saved with ``save_to_disk`` (each row of its text column
is a document). Documents are read lazily (text files in blocks of about 1 MiB cut at line
ends, dataset rows one at a time), tokenized without special tokens, and cut into *windows* of
``window_tokens`` tokens: BOS (when the tokenizer has one) followed by the next
``window_tokens - 1`` tokens of the document; the last window of a document may be shorter.
Windows never span two documents. Every window is ablated on its own, as a prompt would be,
so a window's rows do not depend on which shard it lands in.

The output folder holds ``shard-00000.parquet``, ``shard-00001.parquet``, ... (one row per
connection: ``SHARD_COLUMNS``, the prompt table's columns plus ``document`` and ``window``)
and ``manifest.json``: the run's configuration and, per shard, the range of windows it
finished. A shard is written to a temporary file and renamed, and the manifest (also written
atomically) is updated after the shard, so a run that stops at any moment leaves only complete
shards behind; rerunning the same command skips every window already recorded. A rerun with a
different configuration is refused, and so is a second run while one is writing the folder
(an exclusive ``flock`` on the folder's lock file, held for the whole run). The manifest
records each shard's row count and SHA-256; every read checks them, so a damaged or replaced
shard is an error naming it.

Statistics stream the shards (``corpus_stats``): they can be re-split at any ε since the shards
keep the Jacobian of every connection. See ``jsae.corpus.mergeable`` for which are exact.

Modules, each importing only those above it: ``job`` (the settings), ``lock`` (one run per
output folder), ``reader`` (corpora), ``manifest`` (the record of finished shards), ``plan`` (windows, what is done, shards to do), ``store``
(the output folder), ``engine`` (ablating windows), ``mergeable`` (statistics that merge),
``ray`` (the Ray engine), ``run`` (running a job, statistics of its shards).
"""

from jsae.corpus.engine import TARGET_SHARD_ROWS, WindowEngine
from jsae.corpus.job import DEFAULT_ENGINE, ENGINES, CorpusError, CorpusJob, CorpusProgress
from jsae.corpus.lock import LOCK, claim_output
from jsae.corpus.manifest import (
    MANIFEST,
    MANIFEST_FORMAT,
    Manifest,
    ShardEntry,
    WindowKey,
    WindowRef,
    read_manifest,
)
from jsae.corpus.mergeable import (
    ABS_EDGES,
    DECOMPOSITION_COLUMNS,
    DIFF_EDGES,
    CorpusStats,
    ExperimentStats,
)
from jsae.corpus.plan import DoneSet, Unit, Window, document_windows, plan_units
from jsae.corpus.ray import (
    INSTALL_HINT,
    RayConfig,
    RayEngine,
    RayError,
    check_ray,
    run_units_on_ray,
)
from jsae.corpus.reader import BLOCK_CHARS, HF_MARKERS, Corpus, open_corpus
from jsae.corpus.run import CorpusRun, corpus_joint, corpus_stats, run_corpus
from jsae.corpus.store import (
    SHARD_COLUMNS,
    SHARD_NAME,
    SHARD_RE,
    SHARD_SCHEMA,
    check_output_folder,
    open_output,
    read_shards,
    shard_paths,
    verified_shards,
    write_shard,
)

__all__ = [
    "ABS_EDGES",
    "BLOCK_CHARS",
    "DIFF_EDGES",
    "DEFAULT_ENGINE",
    "ENGINES",
    "HF_MARKERS",
    "INSTALL_HINT",
    "LOCK",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "SHARD_COLUMNS",
    "SHARD_NAME",
    "SHARD_RE",
    "SHARD_SCHEMA",
    "TARGET_SHARD_ROWS",
    "Corpus",
    "CorpusError",
    "CorpusJob",
    "CorpusProgress",
    "CorpusRun",
    "CorpusStats",
    "DECOMPOSITION_COLUMNS",
    "DoneSet",
    "ExperimentStats",
    "Manifest",
    "RayConfig",
    "RayEngine",
    "RayError",
    "ShardEntry",
    "Unit",
    "Window",
    "WindowEngine",
    "WindowKey",
    "WindowRef",
    "check_output_folder",
    "check_ray",
    "claim_output",
    "corpus_joint",
    "corpus_stats",
    "document_windows",
    "open_corpus",
    "open_output",
    "plan_units",
    "read_manifest",
    "read_shards",
    "run_corpus",
    "run_units_on_ray",
    "shard_paths",
    "verified_shards",
    "write_shard",
]
