"""Errors on the page, never tracebacks: a ``JSAEError`` shows its own message, anything
else a short line (and the server log gets the traceback)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from jsae.errors import JSAEError

log = logging.getLogger("jsae.app")
T = TypeVar("T")


def error_message(err: BaseException, what: str) -> str:
    """What to show for an error: a ``JSAEError``'s own message, or a short line."""
    if isinstance(err, JSAEError):
        return str(err)
    first = str(err).splitlines()[0] if str(err) else ""
    return (
        f"Unexpected error while {what}: {type(err).__name__}"
        + (f": {first}" if first else "")
        + ". Try other settings; if it keeps happening, the server log has the details."
    )


def guarded(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Call ``fn``; on an error show ``st.error`` (never a traceback) and return None.

    Streamlit's own control flow (rerun, stop, switch page) passes through: it is not an
    ``Exception``.
    """
    try:
        return fn(*args, **kwargs)
    except JSAEError as err:
        st.error(error_message(err, what), icon=":material/error:")
    except Exception as err:
        log.exception("while %s", what)
        st.error(error_message(err, what), icon=":material/error:")
    return None
