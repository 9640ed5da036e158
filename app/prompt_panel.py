"""The prompt panel above every page: the prompt (text and example picker), ε (a number
and a log-scale slider kept in sync) and Run."""

from __future__ import annotations

import streamlit as st

from app.cache import prompt_store
from jsae import explore
from jsae.errors import JSAEError
from jsae.hosting import clean_prompt
from jsae.table import check_eps


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


def eps_text(eps: float) -> str:
    """ε as the box shows it: the shortest text that reads back as the same float."""
    return repr(float(eps))


def typed_eps() -> tuple[float | None, str | None]:
    """The ε typed in the box: (ε, None), or (None, why it is unusable, quoting the text)."""
    typed = st.session_state.get("eps", "")
    try:
        return check_eps(typed.strip() if isinstance(typed, str) else typed), None
    except JSAEError as err:
        return None, f"{err} Type a positive ε, or pick one on the log slider."


def _on_eps_text() -> None:
    eps, _ = typed_eps()
    if eps is not None:
        st.session_state["eps_slider"] = explore.nearest_eps_stop(eps)


def _on_eps_slider() -> None:
    st.session_state["eps"] = eps_text(st.session_state["eps_slider"])


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
                st.text_input(
                    "ε",
                    key="eps",
                    persist_state="session",
                    on_change=_on_eps_text,
                    help="A connection is important when |J| > ε, unimportant when |J| ≤ ε "
                    "(|J| exactly ε counts as unimportant; the research notebook's strict < and "
                    "> left it in neither set). Changing ε only re-splits; nothing is "
                    "recomputed.",
                )
            eps, eps_error = typed_eps()
            with c2:
                st.select_slider(
                    "ε (log scale)",
                    options=explore.EPS_GRID,
                    key="eps_slider",
                    format_func=lambda v: f"{v:g}",
                    persist_state="session",
                    on_change=_on_eps_slider,
                    disabled=eps is None,  # it cannot show the box's unusable ε
                )
            pressed = st.button(
                "Run",
                type="primary",
                key="run_button",
                width="stretch",
                icon=":material/play_arrow:",
            )
    text, removed = clean_prompt(text or "")
    if removed:
        st.caption(f"{removed} control character(s) were removed from the prompt.")
    if len(text) > explore.MAX_URL_TEXT:
        st.caption(
            f"This prompt is too long for a link (over {explore.MAX_URL_TEXT:,} characters): "
            f"the link names it by its hash and {prompt_store().note}"
        )
    return text, eps, eps_error, pressed
