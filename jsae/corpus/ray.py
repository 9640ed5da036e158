"""The corpus run on Ray: one ablation engine per Ray worker, fed by Ray Data.

The driver (the ``jsae ablate --engine ray`` process) reads and tokenizes the corpus and plans
shards exactly as the local engine does, skipping what the output folder's manifest records as
done. The shards are handed to Ray Data in waves (``RayConfig.units_per_wave`` at a time, so
the driver never holds the whole corpus); ``map_batches`` runs ``RayEngine``, a callable class
that loads the source once per worker and then ablates one shard per call, on the worker's GPU
when it has one. Each worker writes its shard straight into the output folder (temporary file,
then rename) and returns only the manifest entry; the driver records entries as they arrive.

On a cluster of several machines the output folder must be on storage every node sees (NFS,
a mounted bucket), and every node needs jsae installed (``pip install 'jsae[ray]'``).

Ray is optional: ``check_ray`` is the one place that imports it, and only when the Ray engine
is asked for.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from jsae.corpus.engine import WindowEngine
from jsae.corpus.job import CorpusJob
from jsae.corpus.manifest import ShardEntry
from jsae.corpus.plan import Unit
from jsae.corpus.store import write_shard
from jsae.errors import JSAEError, first_line

INSTALL_HINT = "pip install 'jsae[ray]'  (or: pip install -r requirements-ray.txt)"


class RayError(JSAEError):
    """Ray is missing, or the Ray cluster cannot be reached or fails."""


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide to run on Ray.

    Args:
        address: the cluster (``ray start --head`` prints it). None: the ``RAY_ADDRESS``
            environment variable, else a single-node cluster started on this machine.
        workers: engines running at once (None: one per GPU, or per ``cpus_per_worker`` CPUs).
        cpus_per_worker: CPUs each engine reserves (its torch threads).
        gpus_per_worker: GPUs each engine reserves (None: 1 when the cluster has GPUs, else 0).
        units_per_wave: shards handed to Ray Data per wave (bounds the driver's memory).
        local_cpus: CPUs of a cluster started here (None: all of this machine's).
        object_store_mb: object store size of a cluster started here (None: Ray's default).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    units_per_wave: int = 256
    local_cpus: int | None = None
    object_store_mb: int | None = None


def check_ray() -> ModuleType:
    """Import Ray, or say how to install it."""
    try:
        # Ray is an optional extra (jsae[ray]): imported here, on demand, and nowhere else
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayError(
            f"The Ray engine needs Ray, which is not installed. Install it with: {INSTALL_HINT}"
        ) from None
    return ray


class RayEngine:
    """Ray Data callable class: one ``WindowEngine`` per worker, one shard per call.

    Args:
        job: the corpus run.
    """

    def __init__(self, job: CorpusJob) -> None:
        device = "cuda" if check_ray().get_gpu_ids() else "cpu"
        self.engine = WindowEngine(job, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        entries = []
        for payload in batch["unit"]:
            unit = pickle.loads(payload)
            table, tokens = self.engine.run_unit(unit)
            entry = write_shard(self.engine.job.output, unit, table, tokens)
            entries.append(json.dumps(entry.to_json()))
        return {"entry": np.array(entries, dtype=object)}


def _init(ray: ModuleType, config: RayConfig) -> bool:
    """Connect to (or start) a cluster; True when this call started it."""
    if ray.is_initialized():
        return False
    address = config.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "ignore_reinit_error": True,
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "WARNING",
    }
    if address is None:
        if config.local_cpus is not None:
            kwargs["num_cpus"] = config.local_cpus
        if config.object_store_mb is not None:
            kwargs["object_store_memory"] = config.object_store_mb * 2**20
    try:
        ray.init(address=address, **kwargs)
    except Exception as err:  # ConnectionError, RuntimeError, ValueError, ...
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise RayError(f"Could not start or reach {where}: {first_line(err)}") from None
    return True


def _workers(ray: ModuleType, config: RayConfig) -> tuple[int, float]:
    """How many engines run at once, and the GPUs each reserves."""
    resources = ray.cluster_resources()
    gpus = config.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    if config.workers is not None:
        return max(1, config.workers), gpus
    if gpus > 0:
        return max(1, int(resources.get("GPU", 0) // gpus)), gpus
    return max(1, int(resources.get("CPU", 1) // config.cpus_per_worker)), gpus


def run_units_on_ray(
    job: CorpusJob,
    units: Iterator[Unit],
    on_shard: Callable[[ShardEntry], None],
    config: RayConfig | None = None,
) -> None:
    """Ablate ``units`` on Ray; ``on_shard(entry)`` per finished shard."""
    config = config or RayConfig()
    ray = check_ray()
    started = _init(ray, config)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        workers, gpus = _workers(ray, config)
        while wave := list(itertools.islice(units, max(1, config.units_per_wave))):
            items = [{"unit": pickle.dumps(unit)} for unit in wave]
            results = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                RayEngine,
                fn_constructor_kwargs={"job": job},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
                num_cpus=config.cpus_per_worker,
                num_gpus=gpus,
            )
            try:
                for row in results.iter_rows():
                    on_shard(ShardEntry.from_json(json.loads(row["entry"])))
            except JSAEError:
                raise
            except Exception as err:  # a worker's error arrives wrapped by Ray
                cause = _root_cause(err)
                if isinstance(cause, JSAEError):
                    raise cause from None
                raise RayError(f"The Ray job failed: {first_line(cause)}") from err
    finally:
        if started:
            ray.shutdown()


def _root_cause(err: BaseException) -> BaseException:
    """What a worker raised, unwrapped from Ray's exception chain: the first JSAEError on the
    way down, else the innermost exception (Ray's own wrapper carries a traceback, not the
    message)."""
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, JSAEError):
            return err
        inner = getattr(err, "cause", None)
        if isinstance(inner, JSAEError):
            return inner
        nxt = err.__cause__ or err.__context__ or inner
        if nxt is None:
            return err
        err = nxt
    return err
