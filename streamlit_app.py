"""jsae explorer: do the sparse Jacobians of JSAEs reflect real causal sparsity in an MLP?

Run with ``streamlit run streamlit_app.py`` (or ``make app``). This file is the frame around
every page: the navigation, the sidebar (source, layer, pair kind, ablation mode), the
prompt panel (prompt, ε, Run) and the URL state. The pages live in ``pages/``.

Environment: ``JSAE_DEFAULT_SOURCE`` replaces the bundled default ("demo") as the source
the app opens on (a folder or a W&B artifact path).
"""

from __future__ import annotations

import streamlit as st

from jsae import explore
from pages.shared import ui

st.set_page_config(
    page_title="jsae explorer",
    page_icon=":material/hub:",
    layout="wide",
    initial_sidebar_state="expanded",
)

# Each page's url_path is its file's name (see docs/architecture.md).
pages = {
    url: st.Page(script, title=title, icon=icon, url_path=url, default=url == ui.DEFAULT_PAGE)
    for url, (script, title, icon, _) in ui.PAGES.items()
}
page = st.navigation(list(pages.values()))
page_key = next(url for url, p in pages.items() if p.url_path == page.url_path)

ui.init_session()
ui.apply_secrets()
st.session_state.pop(ui.CONTEXT, None)

with st.sidebar:
    spec = ui.source_picker()
    source = None
    if spec is not None:
        source = ui.guarded("loading the source", ui.get_source, *spec)
    if source is not None:
        layer, kind = ui.pair_picker(source)
        mode, scale = ui.mode_picker()
        ui.source_summary(source)

_, title, _, description = ui.PAGES[page_key]
st.title(title)
st.caption(description)
ui.show_url_warnings()

if source is None:
    if spec is None:
        st.info("Choose a source in the sidebar.", icon=":material/arrow_back:")
    else:
        st.info(
            "The source could not be loaded: fix it in the sidebar (the bundled default is "
            "'Bundled default').",
            icon=":material/arrow_back:",
        )
        ui.sync_source_in_url(*spec)
else:
    text, eps, eps_error, pressed = ui.prompt_panel()
    current = explore.RunKey(spec[0], spec[1], layer, kind, mode, scale, text)
    if pressed or st.session_state.pop(ui.AUTORUN, False):
        st.session_state[ui.RUN] = current
    ctx = ui.Context(
        source=source,
        current=current,
        run=st.session_state.get(ui.RUN),
        eps=eps,
        eps_error=eps_error,
        view=ui.view_state(current, eps, page_key),
        page=page_key,
    )
    st.session_state[ui.CONTEXT] = ctx
    try:
        with ui.frame_active():
            ui.guarded(f"drawing the {title} page", page.run)
    finally:
        ui.sync_url(ui.view_state(current, eps, page_key))
