"""The explorer's shared Streamlit layer: caches, URL state, the sidebar, the prompt panel,
and error guards. Page scripts import this; the logic it calls lives in ``jsae``.

This folder sits *below* ``pages/`` on purpose: Streamlit's legacy ``pages/`` discovery
only lists ``pages/*.py``, so these helpers can never show up as pages.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import runpy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from jsae import explore
from jsae.ablation import MODES
from jsae.dose import DoseResponse, dose_response
from jsae.errors import JSAEError
from jsae.hosting import HostedConfig, SlotLimiter, clean_prompt
from jsae.loading import load_source
from jsae.sandwich import Sandwich
from jsae.table import DEFAULT_EPS, check_eps

log = logging.getLogger("jsae.app")
T = TypeVar("T")

PAGES = {
    # url path (= the file's name, see docs/architecture.md): (script, title, icon, description)
    "causal_sparsity": (
        "pages/causal_sparsity.py",
        "Causal sparsity",
        ":material/bar_chart:",
        "Perturb every active input feature of every token and measure how much each output "
        "feature moves. Do the connections the Jacobian calls unimportant (|J| ≤ ε) really "
        "not move?",
    ),
    "jacobian_vs_effect": (
        "pages/jacobian_vs_effect.py",
        "Jacobian vs effect",
        ":material/scatter_plot:",
        "How well does the first-order prediction −s·J match the measured change of every "
        "connection, and which unimportant connections moved most?",
    ),
    "token_explorer": (
        "pages/token_explorer.py",
        "Token explorer",
        ":material/grid_on:",
        "One token's Jacobian, its strongest connections, and a connection's dose-response curve.",
    ),
    "jsae_vs_plain": (
        "pages/jsae_vs_plain.py",
        "JSAE vs plain",
        ":material/compare_arrows:",
        "The same prompt through the JSAE pair and the plain pair (trained without the "
        "Jacobian penalty) of the same layer.",
    ),
}
DEFAULT_PAGE = "causal_sparsity"
TOKEN_PAGE = "token_explorer"
ENTRYPOINT = Path(__file__).resolve().parents[2] / "streamlit_app.py"

# Session-state keys that are not widgets.
RUN = "_run"  # the RunKey of the last Run
SELECTION = "_selection"  # the token explorer's {position, in_feature, out_feature}
CONTEXT = "_context"
INITIALISED = "_initialised"
URL_WARNINGS = "_url_warnings"
AUTORUN = "_autorun"
PAIR_REQUEST = "_pair_request"


# --------------------------------------------------------------------------------------
# The frame


_FRAME = threading.local()


@contextlib.contextmanager
def frame_active() -> Iterator[None]:
    """Mark this script run as inside the frame while the page runs."""
    depth = getattr(_FRAME, "depth", 0)
    _FRAME.depth = depth + 1
    try:
        yield
    finally:
        _FRAME.depth = depth


def in_frame() -> bool:
    return getattr(_FRAME, "depth", 0) > 0


def run_page(main: Callable[[], None]) -> None:
    """A page's body, always inside the frame.

    Until the first ``st.navigation`` call of a server process (and in every AppTest run),
    Streamlit runs apps with a ``pages/`` folder in its legacy mode, which executes a
    requested ``pages/<name>.py`` directly. A page run that way runs the frame
    (``streamlit_app.py``) instead, which switches to ``st.navigation`` and runs the page
    again, inside it.
    """
    if in_frame():
        main()
    else:
        runpy.run_path(str(ENTRYPOINT), run_name="__main__")


# --------------------------------------------------------------------------------------
# Errors


def error_message(err: BaseException, what: str) -> str:
    """What to show for an error: a ``JSAEError``'s own message, or a short line."""
    if isinstance(err, JSAEError):
        return str(err)
    first = str(err).splitlines()[0] if str(err) else ""
    return (
        f"Unexpected error while {what}: {type(err).__name__}"
        + (f": {first}" if first else "")
        + ". Try other settings; if it keeps happening, the server log has the details."
    )


def guarded(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call ``fn``; on an error show ``st.error`` (never a traceback) and return None.

    Streamlit's own control flow (rerun, stop, switch page) passes through: it is not an
    ``Exception``.
    """
    try:
        return fn(*args, **kwargs)
    except JSAEError as err:
        st.error(error_message(err, what), icon=":material/error:")
    except Exception as err:
        log.exception("while %s", what)
        st.error(error_message(err, what), icon=":material/error:")
    return None


# --------------------------------------------------------------------------------------
# Caches: heavy objects once per process, results keyed by everything they depend on


def _secrets() -> dict[str, Any]:
    try:
        if st.secrets.load_if_toml_exists():
            return st.secrets.to_dict()
    except Exception:  # a broken secrets file is reported by apply_secrets
        pass
    return {}


def hosted() -> HostedConfig:
    """The hosted-mode settings (environment first, then ``[hosted]`` in secrets.toml)."""
    return _hosted_config(
        tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("JSAE_")))
    )


@st.cache_resource(show_spinner=False)
def _hosted_config(env: tuple[tuple[str, str], ...]) -> HostedConfig:
    return HostedConfig.from_settings(dict(env), _secrets())


@st.cache_resource(show_spinner=False)
def slot_limiter(capacity: int) -> SlotLimiter:
    """One limiter per process: at most ``capacity`` experiments compute at once."""
    return SlotLimiter(capacity)


@st.cache_resource(show_spinner="Loading the model and its JSAE pairs…", max_entries=4)
def _load_source(source: str, model: str | None):
    src = load_source(source, model=model or None)
    for p in src.model.parameters():  # shared by every session: read-only
        p.requires_grad_(False)
    return src


def get_source(source: str, model: str | None):
    """The loaded source, shared by all sessions (only allowed sources when hosted)."""
    hosted().check_source(source, model)
    return _load_source(source, model)


@st.cache_resource(show_spinner=False, max_entries=32)
def get_sandwich(source: str, model: str | None, layer: int, kind: str) -> Sandwich:
    """The MLP sandwich of one pair (its weight products precomputed once)."""
    src = get_source(source, model)
    return Sandwich(src.model, src.pair(layer, kind))


@st.cache_data(show_spinner=False, max_entries=16)
def get_run(
    source: str, model: str | None, layer: int, kind: str, mode: str, scale: float, text: str
) -> explore.RunData:
    """The ε-free per-connection table of one prompt (cached across sessions)."""
    key = explore.RunKey(source, model, layer, kind, mode, scale, text)
    src = get_source(source, model)
    sandwich = get_sandwich(source, model, layer, kind)
    config = hosted()
    notice = st.empty()
    bar = st.progress(0.0, text=f"Ablating every connection ({kind} pair, layer {layer})…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Ablating: {done:,} of {total:,} tokens done")

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
            return explore.run_ablation(
                src,
                key,
                progress=progress,
                sandwich=sandwich,
                max_tokens=config.prompt_token_limit,
            )
    finally:
        notice.empty()
        bar.empty()


@st.cache_data(show_spinner="Sweeping the input feature…", max_entries=64)
def get_dose_response(
    source: str,
    model: str | None,
    layer: int,
    kind: str,
    text: str,
    position: int,
    in_feature: int,
    out_feature: int,
) -> DoseResponse:
    src = get_source(source, model)
    sandwich = get_sandwich(source, model, layer, kind)
    x = explore.token_input(
        src.model, layer, text, position, max_tokens=hosted().prompt_token_limit
    )
    return dose_response(sandwich, x, in_feature, out_feature)


def load_run(key: explore.RunKey) -> explore.RunData | None:
    """The run for ``key`` (computed with a progress bar, or from the cache), or None
    after showing the error."""
    return guarded(
        "ablating the prompt",
        get_run,
        key.source,
        key.model,
        key.layer,
        key.kind,
        key.mode,
        key.scale,
        key.text,
    )


# --------------------------------------------------------------------------------------
# The context every page reads


@dataclass
class Context:
    """What the frame resolved this rerun: the source and the current settings.

    Args:
        source: the loaded ``Source``.
        current: the ``RunKey`` of the settings as they are now.
        run: the ``RunKey`` of the last Run (None before the first).
        eps: ε, or None when the typed value is unusable (``eps_error`` says why).
        view: the URL state.
    """

    source: Any
    current: explore.RunKey
    run: explore.RunKey | None
    eps: float | None
    eps_error: str | None
    view: explore.ViewState
    page: str = DEFAULT_PAGE

    @property
    def stale(self) -> bool:
        return self.run is not None and self.run != self.current


def context() -> Context | None:
    """The frame's context, or None (after saying why) when there is none."""
    ctx = st.session_state.get(CONTEXT)
    if ctx is None:
        st.info("Open the explorer through streamlit_app.py to use this page.")
    return ctx


# --------------------------------------------------------------------------------------
# Session initialisation from the URL


def init_session() -> None:
    """Once per session: seed the widgets from the URL's query parameters."""
    if st.session_state.get(INITIALISED):
        return
    st.session_state[INITIALISED] = True
    prompts = explore.default_prompts()
    view, warnings = explore.parse_query_params(st.query_params.to_dict(), prompts)
    st.session_state[URL_WARNINGS] = warnings
    kind = explore.source_type(view.source, view.model)
    st.session_state["source_type"] = kind
    if kind == "wandb":
        st.session_state["source_wandb"] = view.source
    elif kind == "folder":
        st.session_state["source_folder"] = view.source
    elif kind == "model":
        st.session_state["source_pair"] = view.source
        st.session_state["source_model"] = view.model or ""
    from_url = bool({"layer", "kind"} & set(st.query_params.keys()))
    st.session_state[PAIR_REQUEST] = (view.layer, view.kind, from_url)
    st.session_state["mode"] = view.mode
    st.session_state["scale"] = float(view.scale)
    st.session_state["eps"] = float(view.eps)
    st.session_state["eps_slider"] = explore.nearest_eps_stop(view.eps)
    if view.text is not None:
        st.session_state["prompt_choice"] = explore.CUSTOM_PROMPT
        st.session_state["prompt_text"] = view.text
    else:
        name = view.prompt if view.prompt in prompts else next(iter(prompts))
        st.session_state["prompt_choice"] = name
        st.session_state["prompt_text"] = prompts[name]
    st.session_state[AUTORUN] = view.run
    if view.position is not None:
        st.session_state[SELECTION] = {
            "position": view.position,
            "in_feature": view.in_feature,
            "out_feature": view.out_feature,
            "pending": True,
        }


def apply_secrets() -> None:
    """Export ``WANDB_API_KEY`` (and ``JSAE_CACHE``) from ``.streamlit/secrets.toml`` to the
    environment, where wandb and the loaders read them; nothing when there is no file."""
    try:
        if not st.secrets.load_if_toml_exists():
            return
        for key in ("WANDB_API_KEY", "JSAE_CACHE"):
            if key in st.secrets and not os.environ.get(key):
                os.environ[key] = str(st.secrets[key])
    except Exception as err:  # a broken secrets file must not take the app down
        st.sidebar.warning(f"Could not read .streamlit/secrets.toml: {err}")


# --------------------------------------------------------------------------------------
# Sidebar


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
    if choice == "demo":
        st.caption(
            "A 4-layer language model trained for this app, with a JSAE and a plain pair per layer (jsae/assets/demo)."
        )
        return "demo", None
    if choice == "wandb":
        path = st.text_input(
            "W&B artifact",
            key="source_wandb",
            placeholder="entity/project/name:version",
            help="Downloaded once into ~/.cache/jsae (or $JSAE_CACHE). Needs WANDB_API_KEY "
            "(environment or .streamlit/secrets.toml).",
            persist_state="session",
        )
        path = (path or "").strip()
        if not path:
            st.info("Type a W&B artifact path, e.g. `entity/project/pairs:v0`, and press Enter.")
            return None
        return path, None
    if choice == "folder":
        path = st.text_input(
            "Folder",
            key="source_folder",
            placeholder="/path/to/source-or-pair-folder",
            help="A source folder (source.json), a research pair folder (cfg.json + "
            "sae_weights.safetensors) or a sae-lens pair folder (pair.json + in/ + out/).",
            persist_state="session",
        )
        path = (path or "").strip()
        if not path:
            st.info("Type the path of a folder on this machine and press Enter.")
            return None
        return path, None
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
        format_func=lambda s: "Bundled default" if s == "demo" else s,
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
    """Layer (only layers with a pair) and pair kind (where both exist)."""
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
        horizontal=True,
        persist_state="session",
        format_func=lambda k: {"jsae": "JSAE", "plain": "plain"}[k],
        help="JSAE: trained with the Jacobian sparsity penalty. plain: the same pair of "
        "TopK SAEs trained without it.",
    )
    if len(kinds) == 1:
        st.caption(f"Layer {layer} has only a {kinds[0]} pair.")
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
            help="The perturbation size s (any finite number; negative adds the feature).",
        )
    return str(mode), float(scale)


def source_summary(source: Any) -> None:
    cfg = source.model.cfg
    layers = ", ".join(
        f"{kind}: {', '.join(map(str, source.layers(kind)))}" for kind in source.kinds
    )
    with st.expander("About this source"):
        st.markdown(
            f"- model: {cfg.n_layers} layers, d_model {cfg.d_model}, d_mlp {cfg.d_mlp}, "
            f"context {cfg.n_ctx}\n- pairs by kind and layer: {layers}"
        )
        if source.info:
            st.json(source.info, expanded=False)


# --------------------------------------------------------------------------------------
# The prompt panel (main area, above every page)


def _on_prompt_choice() -> None:
    name = st.session_state.get("prompt_choice")
    prompts = explore.default_prompts()
    if name in prompts:
        st.session_state["prompt_text"] = prompts[name]


def _on_prompt_text() -> None:
    text = st.session_state.get("prompt_text", "")
    prompts = explore.default_prompts()
    match = next((name for name, value in prompts.items() if value == text), None)
    st.session_state["prompt_choice"] = match or explore.CUSTOM_PROMPT


def _on_eps_number() -> None:
    eps = st.session_state.get("eps")
    if eps is not None and math.isfinite(eps) and eps > 0:
        st.session_state["eps_slider"] = explore.nearest_eps_stop(eps)


def _on_eps_slider() -> None:
    st.session_state["eps"] = float(st.session_state["eps_slider"])


def prompt_panel() -> tuple[str, float | None, str | None, bool]:
    """Prompt (text + example picker), ε (number + log slider, in sync) and Run.

    Returns (text, ε or None, why ε is unusable or None, Run pressed).
    """
    prompts = explore.default_prompts()
    options = [*prompts, explore.CUSTOM_PROMPT]
    if st.session_state.get("prompt_choice") not in options:
        st.session_state["prompt_choice"] = options[0]
    if "prompt_text" not in st.session_state:
        st.session_state["prompt_text"] = prompts[options[0]]
    with st.container(border=True):
        left, right = st.columns([3, 2], gap="medium")
        with left:
            text = st.text_area(
                "Prompt",
                key="prompt_text",
                height=122,
                persist_state="session",
                on_change=_on_prompt_text,
                help="Over-long prompts are cut to the model's context (you are told how "
                "many tokens were dropped).",
            )
        with right:
            st.selectbox(
                "Example prompts",
                options,
                key="prompt_choice",
                on_change=_on_prompt_choice,
                persist_state="session",
            )
            c1, c2 = st.columns([1, 2])
            with c1:
                eps = st.number_input(
                    "ε",
                    key="eps",
                    min_value=0.0,
                    persist_state="session",
                    step=0.001,
                    format="%g",
                    on_change=_on_eps_number,
                    help="A connection is important when |J| > ε, unimportant when |J| ≤ ε. "
                    "Changing ε only re-splits; nothing is recomputed.",
                )
            with c2:
                st.select_slider(
                    "ε (log scale)",
                    options=explore.EPS_GRID,
                    key="eps_slider",
                    format_func=lambda v: f"{v:g}",
                    persist_state="session",
                    on_change=_on_eps_slider,
                )
            pressed = st.button(
                "Run",
                type="primary",
                key="run_button",
                width="stretch",
                icon=":material/play_arrow:",
            )
    eps_error = None
    try:
        eps = check_eps(eps)
    except JSAEError as err:
        eps, eps_error = None, f"{err} Type a positive ε, or pick one on the log slider."
    text, removed = clean_prompt(text or "")
    if removed:
        st.caption(f"{removed} control character(s) were removed from the prompt.")
    return text, eps, eps_error, pressed


# --------------------------------------------------------------------------------------
# URL


def view_state(ctx_current: explore.RunKey, eps: float | None, page: str) -> explore.ViewState:
    prompts = explore.default_prompts()
    choice = st.session_state.get("prompt_choice")
    text = ctx_current.text
    named = choice if choice in prompts and prompts[choice] == text else None
    run = st.session_state.get(RUN)
    selection = st.session_state.get(SELECTION) or {}
    on_tokens = page == TOKEN_PAGE
    return explore.ViewState(
        source=ctx_current.source,
        model=ctx_current.model,
        layer=ctx_current.layer,
        kind=ctx_current.kind,
        mode=ctx_current.mode,
        scale=ctx_current.scale,
        eps=eps if eps is not None else DEFAULT_EPS,
        prompt=named,
        text=None if named else text,
        run=run is not None and run == ctx_current,
        position=selection.get("position") if on_tokens else None,
        in_feature=selection.get("in_feature") if on_tokens else None,
        out_feature=selection.get("out_feature") if on_tokens else None,
    )


def sync_url(view: explore.ViewState) -> None:
    """Write the view into the URL's query parameters (only when they changed)."""
    params = explore.to_query_params(view)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def sync_source_in_url(source: str, model: str | None) -> None:
    """Name the chosen source in the URL even when it failed to load (so the link
    reproduces the problem), keeping the other parameters."""
    params = st.query_params.to_dict()
    wanted = {k: v for k, v in params.items() if k != "model"} | {"source": source}
    if model:
        wanted["model"] = model
    if wanted != params:
        st.query_params.from_dict(wanted)


# --------------------------------------------------------------------------------------
# What pages share


def show_url_warnings() -> None:
    for warning in st.session_state.pop(URL_WARNINGS, []) or []:
        st.warning(warning, icon=":material/link_off:")


def require_run(ctx: Context) -> explore.RunData | None:
    """The last Run's data (computing it if needed), with the stale / truncation notices;
    None (after saying what to do) when there is nothing to show."""
    if ctx.run is None:
        st.info(
            "Press **Run** to ablate every connection of the prompt.", icon=":material/play_arrow:"
        )
        return None
    if ctx.stale:
        st.info(
            "The settings changed since the last Run; the results below are still for the "
            "old ones. Press **Run** to update them.",
            icon=":material/update:",
        )
    data = load_run(ctx.run)
    if data is None:
        return None
    if data.notice:
        st.warning(data.notice, icon=":material/content_cut:")
    if data.table.empty:
        st.warning(
            "The prompt has no token to ablate besides the BOS token; type a longer prompt.",
            icon=":material/warning:",
        )
        return None
    return data


def page_run() -> tuple[Context, explore.RunData, Any] | None:
    """What a results page draws from: the frame's context, the last run and its table
    split at ε; or None, after saying why there is nothing to draw."""
    ctx = context()
    if ctx is None:
        return None
    data = require_run(ctx)
    if data is None:
        return None
    table = split_table(ctx, data)
    if table is None:
        return None
    return ctx, data, table


def split_table(ctx: Context, data: explore.RunData):
    """The run's table split at ε, or None after showing why ε is unusable."""
    if ctx.eps is None:
        st.error(ctx.eps_error or "ε is unusable.", icon=":material/error:")
        return None
    return guarded("splitting at ε", data.split, ctx.eps)


def run_caption(key: explore.RunKey, extra: str = "") -> None:
    mode = key.mode if key.mode != "scale" else f"scale s = {key.scale:g}"
    st.caption(f"Layer {key.layer} · {key.kind} pair · mode {mode}{extra}")


def open_token_explorer(position: int, in_feature: int, out_feature: int) -> None:
    """Select a connection and switch to the token explorer (in this session)."""
    st.session_state[SELECTION] = {
        "position": int(position),
        "in_feature": int(in_feature),
        "out_feature": int(out_feature),
        "pending": True,
    }
    st.switch_page(PAGES[TOKEN_PAGE][0])


def request_layer(layer: int, kind: str) -> None:
    """Button callback: switch the sidebar to ``layer`` / ``kind`` and run there."""
    st.session_state[PAIR_REQUEST] = (layer, kind, False)
    st.session_state[AUTORUN] = True


def with_kind(key: explore.RunKey, kind: str) -> explore.RunKey:
    return replace(key, kind=kind)


def run_view(ctx: Context) -> explore.ViewState:
    """The URL state of the displayed run (rather than of settings not yet run)."""
    run = ctx.run or ctx.current
    prompts = explore.default_prompts()
    view = ctx.view
    named = view.prompt if view.prompt and prompts.get(view.prompt) == run.text else None
    return replace(
        view,
        source=run.source,
        model=run.model,
        layer=run.layer,
        kind=run.kind,
        mode=run.mode,
        scale=run.scale,
        prompt=named,
        text=None if named else run.text,
        run=True,
    )
