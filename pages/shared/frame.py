"""Streamlit's legacy ``pages/`` mode, worked around: a page run outside the frame runs
the frame instead."""

from __future__ import annotations

import contextlib
import runpy
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

ENTRYPOINT = Path(__file__).resolve().parents[2] / "streamlit_app.py"

_FRAME = threading.local()


@contextlib.contextmanager
def frame_active() -> Iterator[None]:
    """Mark this script run as inside the frame while the page runs."""
    depth = getattr(_FRAME, "depth", 0)
    _FRAME.depth = depth + 1
    try:
        yield
    finally:
        _FRAME.depth = depth


def in_frame() -> bool:
    return getattr(_FRAME, "depth", 0) > 0


def run_page(main: Callable[[], None]) -> None:
    """A page's body, always inside the frame.

    Until the first ``st.navigation`` call of a server process (and in every AppTest run),
    Streamlit runs apps with a ``pages/`` folder in its legacy mode, which executes a
    requested ``pages/<name>.py`` directly. A page run that way runs the frame
    (``streamlit_app.py``) instead, which switches to ``st.navigation`` and runs the page
    again, inside it.
    """
    if in_frame():
        main()
    else:
        runpy.run_path(str(ENTRYPOINT), run_name="__main__")
