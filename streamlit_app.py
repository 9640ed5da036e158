"""jsae explorer: do the sparse Jacobians of JSAEs reflect real causal sparsity in an MLP?

Run with ``streamlit run streamlit_app.py`` (or ``make app``). This file is the frame around
every page: the navigation, the sidebar (source, layer, pair kind, ablation mode), the
prompt panel (prompt, ε, Run) and the URL state. The pages live in ``app/pages/`` (a
folder named ``pages/`` beside this file would put Streamlit in its legacy multipage mode).

Environment: ``JSAE_DEFAULT_SOURCE`` replaces the bundled default ("demo") as the source
the app opens on (a folder or a W&B artifact path).
"""

from __future__ import annotations

import streamlit as st

from app import cache, guard, prompt_panel, settings, sidebar, state, url
from app.registry import DEFAULT_PAGE, PAGES
from jsae import explore

st.set_page_config(
    page_title="jsae explorer",
    page_icon=":material/hub:",
    layout="wide",
    initial_sidebar_state="expanded",
)

# Each page's url_path is its file's name (see docs/architecture.md).
pages = {
    key: st.Page(p.script, title=p.title, icon=p.icon, url_path=key, default=key == DEFAULT_PAGE)
    for key, p in PAGES.items()
}
page = st.navigation(list(pages.values()))
page_key = next(key for key, p in pages.items() if p.url_path == page.url_path)
shown = PAGES[page_key]

state.init_session()
settings.apply_secrets()
st.session_state.pop(state.CONTEXT, None)

with st.sidebar:
    spec = sidebar.source_picker()
    source = None
    if spec is not None:
        source = guard.guarded("loading the source", cache.get_source, *spec)
    if source is not None:
        layer, kind = sidebar.pair_picker(source)
        mode, scale = sidebar.mode_picker()
        sidebar.source_summary(source)

st.title(shown.title)
st.caption(shown.description)
url.show_url_warnings()

if source is None:
    if spec is None:
        st.info("Choose a source in the sidebar.", icon=":material/arrow_back:")
    else:
        st.info(
            "The source could not be loaded: fix it in the sidebar (the bundled default is "
            "'Bundled default').",
            icon=":material/arrow_back:",
        )
        url.sync_source_in_url(*spec)
else:
    text, eps, eps_error, pressed = prompt_panel.prompt_panel()
    current = explore.RunKey(spec[0], spec[1], layer, kind, mode, scale, text)
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
    )
    try:
        guard.guarded(f"drawing the {shown.title} page", page.run)
    finally:
        url.sync_url(url.view_state(current, eps, page_key))
