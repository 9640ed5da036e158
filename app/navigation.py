"""The navigation, set up before anything heavy is imported, so that a cold server paints
the page's title, the navigation and a loading status first.

Streamlit serves the default page at ``/``; a hidden second entry for the same script
under its own name makes ``/causal_sparsity`` open it too (``st.Page`` hashes a page by its
URL path, so the default page's path is the empty one and the alias carries the name).
This module imports Streamlit and the registry only.
"""

from __future__ import annotations

import streamlit as st

from app.registry import DEFAULT_PAGE, PAGES, PageSpec


def pages() -> list[st.Page]:
    """The navigation's pages: the four in order, the default one at ``/``, plus a hidden
    alias of the default page at its own name."""
    entries = [
        st.Page(
            spec.script,
            title=spec.title,
            icon=spec.icon,
            url_path="" if key == DEFAULT_PAGE else key,
            default=key == DEFAULT_PAGE,
        )
        for key, spec in PAGES.items()
    ]
    default = PAGES[DEFAULT_PAGE]
    alias = st.Page(
        default.script,
        title=default.title,
        icon=default.icon,
        url_path=DEFAULT_PAGE,
        visibility="hidden",
    )
    return [*entries, alias]


def page_key(page: st.Page) -> str:
    """The registry key of the page Streamlit chose (the default page's is ``DEFAULT_PAGE``,
    at ``/`` or by its name)."""
    return page.url_path or DEFAULT_PAGE


def navigate() -> tuple[st.Page, PageSpec]:
    """Set up the navigation and return the page to run with its ``PageSpec``."""
    page = st.navigation(pages())
    return page, PAGES[page_key(page)]
