"""Session state: the keys that are not widgets, the ``Context`` the frame leaves for the
page, and the widgets' first values, read from the URL once per session."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import streamlit as st

from app.cache import prompt_store
from app.prompt_panel import eps_text
from app.registry import DEFAULT_PAGE
from jsae import explore
from jsae.analysis import DEFAULT_TAU
from jsae.errors import JSAEError
from jsae.stats import Tolerance

RUN = "_run"  # the RunKey of the last Run
SELECTION = "_selection"  # the token explorer's {position, in_feature, out_feature, pending}
CONTEXT = "_context"
INITIALISED = "_initialised"
URL_WARNINGS = "_url_warnings"
AUTORUN = "_autorun"
PAIR_REQUEST = "_pair_request"  # (layer, kind, from the URL) for the pair picker to apply
HEATMAP_ORDER = "tok_order"  # the token explorer's heatmap order (its widget's key)
CMP_A, CMP_B = "cmp_a", "cmp_b"  # JSAE vs plain's two kinds (their widgets' keys)
TAU = "tau"  # the statistics' τ (its widget's key, on the causal sparsity and compare pages)


@dataclass
class Context:
    """What the frame resolved this rerun: the source and the current settings.

    Args:
        source: the loaded ``Source``.
        current: the ``RunKey`` of the settings as they are now.
        run: the ``RunKey`` of the last Run (None before the first).
        eps: ε, or None when the typed value is unusable (``eps_error`` says why).
        view: the URL state.
        page: the URL path of the page on screen.
        tau: the statistics' τ (a connection moved when |diff| > τ).
        tolerance: the "within tolerance" rule of every summary and agreement figure.
    """

    source: Any
    current: explore.RunKey
    run: explore.RunKey | None
    eps: float | None
    eps_error: str | None
    view: explore.ViewState
    page: str = DEFAULT_PAGE
    tau: float = DEFAULT_TAU
    tolerance: Tolerance = Tolerance()

    @property
    def stale(self) -> bool:
        return self.run is not None and self.run != self.current

    @property
    def stale_but_kind(self) -> bool:
        """Stale in anything but the pair kind (a page that picks its own kinds)."""
        return self.run is not None and replace(self.run, kind=self.current.kind) != self.current


def context() -> Context:
    """The context the frame left for the page it runs (pages run inside the frame only)."""
    return st.session_state[CONTEXT]


def current_tau() -> float:
    """τ as set now (its widget's value, kept for the session; the URL's on the first run)."""
    value = st.session_state.get(TAU)
    return float(value) if value is not None else DEFAULT_TAU


def current_display() -> dict[str, Any]:
    """Every display setting's value as set now (None where its widget has none)."""
    return {name: st.session_state.get(name) for name in explore.DISPLAY_SETTINGS}


def current_tolerance() -> Tolerance:
    """The tolerance as set now (Jacobian vs effect's inputs; the URL's on the first run)."""
    try:
        return explore.display_tolerance(current_display())
    except JSAEError:  # the inputs refuse it and say why; the figures keep the default
        return Tolerance()


def display_choices(name: str) -> tuple[Any, ...]:
    """A display setting's choices, its value set first (the URL's, else its default) so
    that its widget needs no default of its own."""
    setting = explore.DISPLAY_SETTINGS[name]
    if st.session_state.get(name) is None:
        st.session_state[name] = setting.default
    return setting.choices or ()


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
    st.session_state["pairs"] = view.pairs
    for name in (CMP_A, CMP_B):
        if getattr(view, name) is not None:
            st.session_state[name] = getattr(view, name)
    st.session_state["seed"] = int(view.seed)
    st.session_state["eps"] = eps_text(view.eps)
    st.session_state["eps_slider"] = explore.nearest_eps_stop(view.eps)
    text, autorun = view.text, view.run
    if view.text_hash is not None:
        text = prompt_store().get(view.text_hash)
        if text is None:
            warnings.append(
                f"The link's prompt (kept by its hash {view.text_hash}) is not on this server: "
                "it was typed on another server or removed since. The first example prompt "
                "is shown instead."
            )
            autorun = False
    if text is not None:
        st.session_state["prompt_choice"] = explore.CUSTOM_PROMPT
        st.session_state["prompt_text"] = text
    else:
        name = view.prompt if view.prompt in prompts else next(iter(prompts))
        st.session_state["prompt_choice"] = name
        st.session_state["prompt_text"] = prompts[name]
    st.session_state[AUTORUN] = autorun
    st.session_state[HEATMAP_ORDER] = view.order
    st.session_state[TAU] = float(view.tau)
    st.session_state.update(explore.display_values(dict(view.display)))
    if view.position is not None:
        st.session_state[SELECTION] = {
            "position": view.position,
            "in_feature": view.in_feature,
            "out_feature": view.out_feature,
            "pending": True,
        }
