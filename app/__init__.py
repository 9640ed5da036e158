"""The explorer's Streamlit layer: the frame's parts (registry, settings, caches, session
state, sidebar, prompt panel, URL) and, in ``app/pages/``, the four page scripts.

The logic it calls lives in ``jsae`` (``jsae.explore``, ``jsae.charts``), free of Streamlit.
"""
