"""The URL's query parameters: written from the view after every rerun, so that a link
reproduces what is on screen; and the warnings about a link's unusable values."""

from __future__ import annotations

from urllib.parse import urlsplit

import streamlit as st

from app.cache import prompt_store
from app.registry import DEFAULT_PAGE, TOKEN_PAGE
from app.state import (
    CMP_A,
    CMP_B,
    HEATMAP_ORDER,
    RUN,
    SELECTION,
    URL_WARNINGS,
    Context,
    current_display,
    current_tau,
)
from jsae import explore
from jsae.table import DEFAULT_EPS


def view_state(current: explore.RunKey, eps: float | None, page: str) -> explore.ViewState:
    """The view of the settings as they are now, on ``page``."""
    on_tokens = page == TOKEN_PAGE
    selection = (st.session_state.get(SELECTION) or {}) if on_tokens else {}
    order = st.session_state.get(HEATMAP_ORDER) if on_tokens else None
    return explore.view_of(
        current,
        eps=eps if eps is not None else DEFAULT_EPS,
        prompt=st.session_state.get("prompt_choice"),
        prompts=explore.default_prompts(),
        run=st.session_state.get(RUN) == current,
        position=selection.get("position"),
        in_feature=selection.get("in_feature"),
        out_feature=selection.get("out_feature"),
        order=order if order in explore.HEATMAP_ORDERS else explore.DEFAULT_HEATMAP_ORDER,
        tau=current_tau(),
        display=current_display(),
        compare=(st.session_state.get(CMP_A), st.session_state.get(CMP_B)),
    )


def run_view(ctx: Context) -> explore.ViewState:
    """The URL state of the displayed run (rather than of settings not yet run)."""
    view = ctx.view
    return explore.view_of(
        ctx.run or ctx.current,
        eps=view.eps,
        prompt=view.prompt,
        prompts=explore.default_prompts(),
        run=True,
        position=view.position,
        in_feature=view.in_feature,
        out_feature=view.out_feature,
        order=view.order,
        tau=view.tau,
        display=explore.display_values(dict(view.display)),
        compare=(view.cmp_a, view.cmp_b),
    )


def link_to(view: explore.ViewState, page: str) -> str:
    """The full link to ``view`` on ``page`` (its URL path; the default page at ``/``)."""
    base = urlsplit(st.context.url or "")
    root = f"{base.scheme}://{base.netloc}" if base.netloc else ""
    path = "" if page == DEFAULT_PAGE else page
    return f"{root}/{explore.view_link(path, explore.to_query_params(view))}"


def copy_link(view: explore.ViewState, page: str) -> None:
    """A "Copy link" popover: the view's link in a code box (its icon copies it)."""
    with st.popover("Copy link", icon=":material/link:", width="stretch"):
        st.code(link_to(view, page), language=None, wrap_lines=True)
        st.caption("The link reopens this view: every setting, and the results after Run.")


def show_url_warnings() -> None:
    """The warnings about the link's unusable parameters, once."""
    for warning in st.session_state.pop(URL_WARNINGS, []) or []:
        st.warning(warning, icon=":material/link_off:")


def sync_url(view: explore.ViewState, eps_typed: str | None = None) -> None:
    """Write the view into the URL's query parameters (only when they changed).

    ``eps_typed``: the ε box's text when it is unusable; the URL then carries it as typed
    (opening the link warns about it) rather than the last usable ε.
    """
    params = explore.to_query_params(view)
    if "prompt_hash" in params and view.text is not None:
        prompt_store().put(view.text)  # before the link that names it is shown
    if eps_typed is not None:
        params["eps"] = eps_typed
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
