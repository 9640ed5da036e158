"""The explorer as a server that warms up at start: ``streamlit run serve.py`` (``make serve``).

The same app as ``streamlit run streamlit_app.py``, wrapped in ``st.App`` so that the
server imports the package and loads the default source while it already answers
(``app.warm_up``): the first visitor's page is usable seconds sooner. Also an ASGI app:
``uvicorn serve:app``.
"""

from __future__ import annotations

import streamlit as st

from app.warm_up import lifespan

app = st.App("streamlit_app.py", lifespan=lifespan)
