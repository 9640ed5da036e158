"""The frame around every page, drawn after the first paint: the sidebar (source, layer,
pair kind, ablation mode), the prompt panel (prompt, ε, Run), the URL state, then the page.

Importing this module imports ``jsae`` (torch, TransformerLens: seconds on a cold process),
which is why ``streamlit_app.py`` imports it only after the title, the navigation and the
loading status are on screen.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import cache, guard, prompt_panel, settings, sidebar, state, url
from app.registry import PageSpec
from jsae import explore

LOADING = "Loading the model and its JSAE pairs…"
"""The loading status's text (a cold server shows it while the source loads)."""


def draw(page: Any, page_key: str, shown: PageSpec, loading: Any) -> None:
    """Everything but the title: the sidebar, the prompt panel, the URL, then ``page``.

    Args:
        page: the ``st.Page`` to run.
        page_key: its key in ``app.registry.PAGES``.
        shown: its ``PageSpec``.
        loading: the placeholder under the title that holds the loading status until the
            source is loaded.
    """
    state.init_session()
    settings.apply_secrets()
    st.session_state.pop(state.CONTEXT, None)

    with st.sidebar:
        spec = sidebar.source_picker()
        source = None
        if spec is not None:
            loading.progress(0.5, text=f"{LOADING} (reading the weights)")
            source = guard.guarded("loading the source", cache.get_source, *spec)
        loading.empty()
        if source is not None:
            layer, kind = sidebar.pair_picker(source)
            mode, scale = sidebar.mode_picker()
            pairs, seed = sidebar.pairs_picker()
            sidebar.source_summary(source)
            link_slot = st.empty()

    url.show_url_warnings()
    if source is None:
        if spec is None:
            st.info("Choose a source in the sidebar.", icon=":material/arrow_back:")
        else:
            st.info(
                "The source could not be loaded: fix it in the sidebar (the bundled default "
                "is 'Bundled default').",
                icon=":material/arrow_back:",
            )
            url.sync_source_in_url(*spec)
        return
    text, eps, eps_error, pressed = prompt_panel.prompt_panel()
    current = explore.RunKey(spec[0], spec[1], layer, kind, mode, scale, text, pairs, seed)
    if pressed or st.session_state.pop(state.AUTORUN, False):
        st.session_state[state.RUN] = current
    st.session_state[state.CONTEXT] = state.Context(
        source=source,
        current=current,
        run=st.session_state.get(state.RUN),
        eps=eps,
        eps_error=eps_error,
        view=url.view_state(current, eps, page_key),
        page=page_key,
        tau=state.current_tau(),
        tolerance=state.current_tolerance(),
    )
    with link_slot.container():
        url.copy_link(st.session_state[state.CONTEXT].view, page_key)
    try:
        guard.guarded(f"drawing the {shown.title} page", page.run)
    finally:
        typed = None if eps is not None else str(st.session_state.get("eps", ""))
        url.sync_url(url.view_state(current, eps, page_key), eps_typed=typed)
