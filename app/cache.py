"""Caches: heavy objects once per process, results keyed by everything they depend on.

``st.cache_resource`` holds the loaded sources and each pair's sandwich, shared by every
session; ``st.cache_data`` holds the ε-free runs and their joint ablation's curves (keyed by
their ``RunKey``), each run's analysis at an ε and τ (``jsae.analysis.analyse`` with the
curves: its statistics, the pair's health, the joint statistics and the verdict, which every
page reads rather than recomputing), the sets removed together at an ε (read off the
curves) and the dose-response curves. The progress bars live inside the cached run and
curves, so a cache hit replays (and removes) them without recomputing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from app.guard import guarded
from app.settings import hosted
from jsae import explore
from jsae.analysis import Analysis, JointCurves, analyse, prompt_curves, set_frame
from jsae.analysis.downstream import DownstreamKL
from jsae.analysis.report import prompt_downstream
from jsae.dose import DoseResponse, dose_response
from jsae.errors import InputError
from jsae.hosting import WANDB_LOGS_PER_SESSION, WANDB_LOGS_PER_SITE, RateLimiter, SlotLimiter
from jsae.loading import load_source
from jsae.loading.wandb_artifact import cache_root
from jsae.sandwich import Sandwich


def prompt_store() -> explore.PromptStore | explore.MemoryPromptStore:
    """The long prompts that links name by hash: kept under ``<jsae cache>/prompts``, or in
    hosted mode in memory only (nothing a visitor types is written to disk)."""
    return _prompt_store(hosted().enabled)


@st.cache_resource(show_spinner=False)
def _prompt_store(in_memory: bool) -> explore.PromptStore | explore.MemoryPromptStore:
    return (
        explore.MemoryPromptStore() if in_memory else explore.PromptStore(cache_root() / "prompts")
    )


@st.cache_resource(show_spinner=False)
def slot_limiter(capacity: int) -> SlotLimiter:
    """One limiter per process: at most ``capacity`` experiments compute at once."""
    return SlotLimiter(capacity)


T = TypeVar("T")
WANDB_RATE = "_wandb_rate"
"""The session-state key of a session's W&B rate limit."""


@st.cache_resource(show_spinner=False)
def site_wandb_limiter() -> RateLimiter:
    """Every session's W&B logs together, in hosted mode: one limit per process."""
    return RateLimiter(WANDB_LOGS_PER_SITE)


def wandb_offered() -> bool:
    """Whether to show "Log to W&B" (hosted: only when the configuration enables it)."""
    return hosted().offers_wandb


def log_run_to_wandb(log: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``log`` (a ``jsae.wandb_log`` function) as hosted mode allows: refused unless the
    configuration enables W&B, else within the session's and the site's rate limits and inside
    an experiment slot, like any experiment. A private app just calls it."""
    config = hosted()
    if not config.enabled:
        return log(*args, **kwargs)
    if not config.wandb:
        raise InputError("This hosted demo does not log to W&B.")
    session = st.session_state.setdefault(WANDB_RATE, RateLimiter(WANDB_LOGS_PER_SESSION))
    site = site_wandb_limiter()
    session.check("in one session")  # before waiting for a slot
    site.check("on this demo")
    with slot_limiter(config.max_concurrent).slot(timeout=config.slot_timeout):
        session.take("in one session")
        site.take("on this demo")
        return log(*args, **kwargs)


@st.cache_resource(show_spinner=False, max_entries=4)  # the frame shows the status
def _load_source(source: str, model: str | None) -> Any:
    src = load_source(source, model=model or None)
    for reads in (src.model, *src.pair_models.values()):
        for p in reads.parameters():  # shared by every session: read-only
            p.requires_grad_(False)
    return src


def get_source(source: str, model: str | None) -> Any:
    """The loaded source, shared by all sessions (only allowed sources when hosted)."""
    hosted().check_source(source, model)
    return _load_source(source, model)


@st.cache_resource(show_spinner=False, max_entries=32)
def get_sandwich(source: str, model: str | None, layer: int, kind: str) -> Sandwich:
    """The MLP sandwich of one pair (its weight products precomputed once)."""
    src = get_source(source, model)
    return Sandwich(src.model_for(layer, kind), src.pair(layer, kind))


@contextlib.contextmanager
def experiment_slot() -> Iterator[None]:
    """Hold an experiment slot for the block: hosted, at most ``max_concurrent`` experiments
    compute at once (a wait is explained in a notice, a long one refused); a private app
    never waits."""
    config = hosted()
    notice = st.empty()

    def waiting() -> None:
        notice.info(
            f"Waiting for a free slot: {config.max_concurrent} experiments are already "
            "running on this demo. Yours starts as soon as one finishes.",
            icon=":material/hourglass_top:",
        )

    try:
        limiter = slot_limiter(config.max_concurrent if config.enabled else 1 << 30)
        with limiter.slot(timeout=config.slot_timeout if config.enabled else None, on_wait=waiting):
            notice.empty()
            yield
    finally:
        notice.empty()


@st.cache_data(show_spinner=False, max_entries=16)
def get_run(key: explore.RunKey) -> explore.RunData:
    """The ε-free per-connection table of one prompt (cached across sessions)."""
    src = get_source(key.source, key.model)
    sandwich = get_sandwich(key.source, key.model, key.layer, key.kind)
    with experiment_slot():
        bar = st.progress(
            0.0, text=f"Ablating every connection ({key.kind} pair, layer {key.layer})…"
        )

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Ablating: {done:,} of {total:,} tokens done")

        try:
            return explore.run_ablation(
                src,
                key,
                progress=progress,
                sandwich=sandwich,
                max_tokens=hosted().prompt_token_limit,
            )
        finally:
            bar.empty()


@st.cache_data(show_spinner=False, max_entries=16)
def get_curves(key: explore.RunKey) -> JointCurves:
    """The joint ablation's curves of the run ``key``'s tokens (``prompt_curves``; cached,
    one per run: they do not depend on ε, whose sets are read off them)."""
    src = get_source(key.source, key.model)
    data = get_run(key)
    sandwich = get_sandwich(key.source, key.model, key.layer, key.kind)
    with experiment_slot():
        bar = st.progress(0.0, text=f"Removing inputs together, in every order ({key.kind} pair)…")

        def progress(done: int, total: int) -> None:
            text = f"Removing inputs together: {done:,} of {total:,} tokens done"
            bar.progress(done / max(total, 1), text=text)

        try:
            return prompt_curves(
                src.model_for(key.layer, key.kind),
                src.pair(key.layer, key.kind),
                data.ablation,
                sandwich,
                progress=progress,
            )
        finally:
            bar.empty()


@st.cache_data(show_spinner=False, max_entries=16)
def get_downstream(key: explore.RunKey) -> DownstreamKL:
    """The next-token KL of the run ``key`` when its output features keep only their top
    inputs (``prompt_downstream`` from ``get_curves``; cached, one per run)."""
    src = get_source(key.source, key.model)
    data = get_run(key)
    curves = get_curves(key)
    with experiment_slot(), st.spinner(f"Rerunning the model on the kept inputs ({key.kind})…"):
        return prompt_downstream(
            src.model_for(key.layer, key.kind), src.pair(key.layer, key.kind), data.ablation, curves
        )


def load_downstream(key: explore.RunKey) -> DownstreamKL | None:
    """``get_downstream``, or None after showing the error."""
    return guarded("rerunning the model on the kept inputs", get_downstream, key)


@st.cache_data(show_spinner=False, max_entries=32)
def get_joint_sets(key: explore.RunKey, eps: float) -> pd.DataFrame:
    """The run's sets removed together at ε (``jsae.analysis.set_frame`` of ``get_curves``)."""
    return set_frame(get_curves(key), eps)


@st.cache_data(show_spinner="Computing the statistics and their intervals…", max_entries=32)
def get_analysis(key: explore.RunKey, eps: float, tau: float) -> Analysis:
    """The analysis of the run ``key`` split at ε with moved = |diff| > τ (cached: one per
    run, ε and τ), against the true edges where the source knows them, with the joint
    ablation's statistics, so that the verdict weighs them. The run and its curves come from
    ``get_run``'s and ``get_curves``' caches; the pair's health reruns the model on the
    ablated tokens only."""
    src = get_source(key.source, key.model)
    data = get_run(key)
    return analyse(
        src.model_for(key.layer, key.kind),
        src.pair(key.layer, key.kind),
        data.result(eps),
        tau=tau,
        sandwich=get_sandwich(key.source, key.model, key.layer, key.kind),
        true_edges=src.true_edges(key.layer, key.kind),
        curves=get_curves(key),  # every input of every token, whatever the sampler kept
    )


@st.cache_data(show_spinner="Sweeping the input feature…", max_entries=64)
def get_dose_response(
    key: explore.RunKey, position: int, in_feature: int, out_feature: int
) -> DoseResponse:
    """The dose-response curve of one connection of a run's token (cached)."""
    src = get_source(key.source, key.model)
    sandwich = get_sandwich(key.source, key.model, key.layer, key.kind)
    x = explore.token_input(
        src.model_for(key.layer, key.kind),
        key.layer,
        key.text,
        position,
        max_tokens=hosted().prompt_token_limit,
    )
    return dose_response(sandwich, x, in_feature, out_feature)


def true_edges(key: explore.RunKey) -> Any:
    """The true edges of the run's pair in its feature ids (a DataFrame), or None when its
    source does not know them (``Source.true_edges``)."""
    return get_source(key.source, key.model).true_edges(key.layer, key.kind)


def load_run(key: explore.RunKey) -> explore.RunData | None:
    """The run for ``key`` (computed with a progress bar, or from the cache), or None
    after showing the error."""
    return guarded("ablating the prompt", get_run, key)


def load_analysis(key: explore.RunKey, eps: float, tau: float) -> Analysis | None:
    """``get_analysis``, or None after showing the error."""
    return guarded("computing the statistics", get_analysis, key, float(eps), float(tau))


def load_joint_sets(key: explore.RunKey, eps: float) -> pd.DataFrame | None:
    """``get_joint_sets``, or None after showing the error."""
    return guarded("removing the sets together", get_joint_sets, key, float(eps))
