"""The sidebar: the source (or, hosted, one of the allowed sources), the pair (layer and
kind) and the perturbation (mode and scale)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.settings import hosted
from app.state import PAIR_REQUEST, URL_WARNINGS
from jsae import explore
from jsae.ablation import MODES, AblationConfig
from jsae.errors import JSAEError
from jsae.hosting import HostedConfig
from jsae.loading import BUILTIN_SOURCES
from jsae.sampler import PAIR_SAMPLER_LABELS, PAIR_SAMPLERS


def source_picker() -> tuple[str, str | None] | None:
    """The sidebar's source choice as (source, model), or None when incomplete."""
    st.subheader("Source")
    config = hosted()
    if config.enabled:
        return _hosted_source_picker(config)
    choice = st.radio(
        "Source",
        explore.SOURCE_TYPES,
        format_func=explore.SOURCE_TYPE_LABELS.get,
        key="source_type",
        label_visibility="collapsed",
        persist_state="session",
    )
    if choice in BUILTIN_SOURCES:
        st.caption(BUILTIN_SOURCES[choice].description)
        return choice, None
    if choice == "wandb":
        path = _typed_source(
            "W&B artifact",
            "source_wandb",
            "entity/project/name:version",
            "Downloaded once into ~/.cache/jsae (or $JSAE_CACHE). Needs WANDB_API_KEY "
            "(environment or .streamlit/secrets.toml).",
            "Type a W&B artifact path, e.g. `entity/project/pairs:v0`, and press Enter.",
        )
        return None if path is None else (path, None)
    if choice == "folder":
        path = _typed_source(
            "Folder",
            "source_folder",
            "/path/to/source-or-pair-folder",
            "A source folder (source.json), a research pair folder (cfg.json + "
            "sae_weights.safetensors) or a sae-lens pair folder (pair.json + in/ + out/).",
            "Type the path of a folder on this machine and press Enter.",
        )
        return None if path is None else (path, None)
    model = st.text_input(
        "Model",
        key="source_model",
        placeholder="gpt2 or /path/to/model-folder",
        help="A TransformerLens model name (needs the model hub or a local HF cache) or a "
        "model folder.",
        persist_state="session",
    )
    pair = st.text_input(
        "Pair folder",
        key="source_pair",
        placeholder="/path/to/pair-folder",
        persist_state="session",
    )
    model, pair = (model or "").strip(), (pair or "").strip()
    if not model or not pair:
        st.info("Give both a model and a pair folder.")
        return None
    return pair, model


def _hosted_source_picker(config: HostedConfig) -> tuple[str, None]:
    """Hosted mode: only the configured sources, whatever the URL says."""
    wanted = st.query_params.get("source")
    if "hosted_source" not in st.session_state:
        if wanted is not None and wanted not in config.sources:
            st.session_state[URL_WARNINGS] = [
                *st.session_state.get(URL_WARNINGS, []),
                "This hosted demo only serves its configured sources; the link's source was "
                f"replaced by {config.sources[0]!r}.",
            ]
        st.session_state["hosted_source"] = (
            wanted if wanted in config.sources else config.sources[0]
        )
    choice = st.selectbox(
        "Source",
        config.sources,
        key="hosted_source",
        format_func=lambda s: BUILTIN_SOURCES[s].label if s in BUILTIN_SOURCES else s,
        label_visibility="collapsed",
        persist_state="session",  # st.switch_page would clear it otherwise
        help="This is a hosted demo: it serves these sources only.",
    )
    st.caption(
        f"Hosted demo: prompts are cut to {config.max_prompt_tokens} tokens and at most "
        f"{config.max_concurrent} experiments run at once."
    )
    return choice, None


def pair_picker(source: Any) -> tuple[int, str]:
    """Layer (only layers with a pair) and pair kind (where both exist), the kinds as the
    source declares them (``Source.pair_kinds``: their order, labels and help)."""
    layers_by_kind = {kind: source.layers(kind) for kind in source.kinds}
    request = st.session_state.pop(PAIR_REQUEST, None)
    if request is not None:
        layer, kind, from_url = request
        layer, kind, warnings = explore.resolve_pair(layers_by_kind, layer, kind)
        if from_url:
            st.session_state.setdefault(URL_WARNINGS, []).extend(warnings)
    else:
        layer, kind, _ = explore.resolve_pair(
            layers_by_kind, st.session_state.get("layer"), st.session_state.get("kind", "jsae")
        )
    st.session_state["layer"] = layer
    st.session_state["kind"] = kind
    all_layers = sorted({lay for layers in layers_by_kind.values() for lay in layers})
    st.subheader("Pair")
    layer = st.selectbox(
        "Layer",
        all_layers,
        key="layer",
        help="Only layers that have a pair in this source.",
        persist_state="session",
    )
    kinds = explore.kinds_at(layers_by_kind, layer)
    if st.session_state.get("kind") not in kinds:
        st.session_state["kind"] = kinds[0]
    kind = st.radio(
        "Pair kind",
        kinds,
        key="kind",
        horizontal=len(kinds) <= 2,
        persist_state="session",
        format_func=source.pair_kinds.label,
        help=source.pair_kinds.help,
    )
    if len(kinds) == 1:
        st.caption(f"Layer {layer} has only one pair: {source.pair_kinds.label(kinds[0])}.")
    return int(layer), str(kind)


def mode_picker() -> tuple[str, float]:
    st.subheader("Perturbation")
    mode = st.radio(
        "Ablation mode",
        MODES,
        key="mode",
        format_func=explore.MODE_LABELS.get,
        persist_state="session",
        help="Each active input feature i is perturbed along its decoder direction, "
        "x′ = x − s·W_dec_in[i]. unit: s = 1 (the research notebook's choice); zero: "
        "s = aᵢ removes the feature; scale: s of your choice.",
    )
    scale = explore.DEFAULT_SCALE
    if mode == "scale":
        scale = st.number_input(
            "Scale s",
            key="scale",
            step=0.1,
            format="%g",
            persist_state="session",
            help="The perturbation size s (any non-zero number within float32's range; "
            "negative adds the feature).",
        )
        try:  # refused here, before Run, by the engine's own rule
            AblationConfig(mode=mode, scale=float(scale))
        except JSAEError as err:
            st.error(str(err), icon=":material/error:")
    return str(mode), float(scale)


def pairs_picker() -> tuple[str, int]:
    """Which connections of each token to ablate, and the random sampler's seed."""
    how = st.radio(
        "Connections",
        PAIR_SAMPLERS,
        key="pairs",
        format_func=PAIR_SAMPLER_LABELS.get,
        persist_state="session",
        help="all k×k: every active input with every active output feature (the research "
        "notebook); k equal-rank pairs: the r-th strongest input with the r-th strongest "
        "output (the paper's runners/ablation.py); k random pairs, drawn per token from the "
        "seed (its linearity runs). The joint ablation needs all k×k.",
    )
    seed = 0
    if how == "random":
        seed = st.number_input("Seed", key="seed", min_value=0, step=1, persist_state="session")
    return str(how), int(seed)


def source_summary(source: Any) -> None:
    cfg = source.model.cfg
    layers = ", ".join(
        f"{source.pair_kinds.label(kind)}: {', '.join(map(str, source.layers(kind)))}"
        for kind in source.kinds
    )
    with st.expander("About this source"):
        st.markdown(
            f"- model: {cfg.n_layers} layers, d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, "
            f"context {cfg.n_ctx}\n- pairs by kind and layer: {layers}"
        )
        if source.info:
            st.json(source.info, expanded=False)


def _typed_source(label: str, key: str, placeholder: str, help: str, empty: str) -> str | None:
    """A text input for a source typed by the user; None (with the ``empty`` hint) until
    something is typed."""
    path = st.text_input(
        label, key=key, placeholder=placeholder, help=help, persist_state="session"
    )
    path = (path or "").strip()
    if not path:
        st.info(empty)
        return None
    return path
