"""The corpus run on a local single-node Ray cluster gives the same rows as the local engine."""

import numpy as np
import pandas as pd
import pytest
import torch

ray = pytest.importorskip(
    "ray", reason="Ray is not installed (pip install 'jsae[ray]'); the Ray engine is optional"
)

from jsae.corpus import (  # noqa: E402
    RayConfig,
    corpus_stats,
    read_manifest,
    read_shards,
    run_corpus,
)
from tests.test_corpus import (  # noqa: E402
    EXACT,
    job_for,
    make_corpus,
    make_source,
    sorted_rows,
)

pytestmark = pytest.mark.slow  # a Ray cluster and its workers start in tens of seconds


@pytest.fixture(scope="module")
def cluster():
    """A small local cluster: 2 CPUs, no dashboard, a small object store, and no auth token
    written to the home folder (a throwaway cluster needs none)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            ignore_reinit_error=True,
            object_store_memory=80 * 2**20,
            log_to_driver=False,
            logging_level="ERROR",
        )
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    source = make_source(root / "src")
    corpus = make_corpus(root / "corpus")
    # The reference: one uninterrupted local run with one torch thread, as each Ray worker
    # (1 CPU) has; the same thread count makes the float results bitwise identical.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_corpus(job_for(source, corpus, root / "local"))
    finally:
        torch.set_num_threads(threads)
    return root, source, corpus, sorted_rows(read_shards(root / "local"))


def test_ray_run_matches_the_local_run(cluster, setup):
    root, source, corpus, expected = setup
    out = root / "ray"
    seen = []
    shards = len(read_manifest(root / "local").shards)
    assert shards >= 4
    run = run_corpus(
        job_for(source, corpus, out),
        engine="ray",
        ray_config=RayConfig(workers=2, units_per_wave=-(-shards // 2)),  # two waves
        progress=lambda done, total: seen.append(done),
    )
    assert run.finished and run.tokens == read_manifest(root / "local").tokens
    assert seen == sorted(seen) and seen[-1] == run.tokens
    rows = sorted_rows(read_shards(out))
    pd.testing.assert_frame_equal(rows, expected)
    local, remote = corpus_stats(root / "local").summary(), corpus_stats(out).summary()
    for column in EXACT:
        np.testing.assert_allclose(
            remote[column].to_numpy(float), local[column].to_numpy(float), rtol=1e-9
        )
    pd.testing.assert_frame_equal(remote, local)  # histograms too


def test_ray_resumes_a_local_run(cluster, setup):
    root, source, corpus, expected = setup
    out = root / "mixed"
    job = job_for(source, corpus, out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = run_corpus(job, max_windows=5)
    finally:
        torch.set_num_threads(threads)
    assert not first.finished
    rest = run_corpus(job, engine="ray", ray_config=RayConfig(workers=1))
    assert (
        rest.finished
        and first.windows + rest.windows == expected.groupby(["document", "window"]).ngroups
    )
    pd.testing.assert_frame_equal(sorted_rows(read_shards(out)), expected)
