"""jsae explorer: do the sparse Jacobians of JSAEs reflect real causal sparsity in an MLP?

Run with ``make app`` (``streamlit run streamlit_app.py``) or ``make serve`` (``streamlit run
serve.py``: the same app, warmed up at server start, ``app.warm_up``). This file paints first and
loads later: the page's settings, the navigation (``app.navigation``), the title and a
loading status go out before anything imports ``jsae`` (torch and TransformerLens take
seconds on a cold process); then ``app.frame`` draws what every page shares (sidebar,
prompt panel, URL state) and runs the page. The pages live in ``app/pages/`` (a folder
named ``pages/`` beside this file would put Streamlit in its legacy multipage mode).

Environment: ``JSAE_DEFAULT_SOURCE`` replaces the bundled default ("demo") as the source
the app opens on (a folder or a W&B artifact path).
"""

from __future__ import annotations

import sys

import streamlit as st

from app import warm_up
from app.navigation import navigate, page_key

st.set_page_config(
    page_title="jsae explorer",
    page_icon=":material/hub:",
    layout="wide",
    initial_sidebar_state="expanded",
)
page, shown = navigate()
st.title(shown.title)
st.caption(shown.description)
loading = st.empty()
if "app.frame" not in sys.modules or warm_up.IMPORTING.is_set():  # the import takes seconds
    loading.progress(
        0.1, text="Loading the model and its JSAE pairs… (importing torch and TransformerLens)"
    )

# Imported here, after the first paint, on purpose: it imports jsae (torch).
from app.frame import draw  # noqa: E402

draw(page, page_key(page), shown, loading)
