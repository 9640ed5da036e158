"""Warm the server up when it starts, so the first visitor does not wait for the imports.

``streamlit run streamlit_app.py`` imports nothing of ours until a browser opens a page;
that first page then waits for ``jsae`` (torch, TransformerLens: about 4 s on a cold
process) and the default source. ``serve.py`` (what ``make serve`` runs) wraps the same
script in ``st.App`` with ``lifespan`` below, which starts one background thread at server
start: it imports ``app.frame`` (hence ``jsae``) and the results pages' modules, and loads
the default source into ``app.cache``'s shared cache, while the server already answers. A
page opened meanwhile paints its title, navigation and loading status as before (later: the
thread holds the interpreter's lock part of the time) and waits only for the rest.

Nothing of the warm-up is required: if it fails (a default source that does not load, say),
it logs one line and the page loads the source itself and shows the error as usual.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from streamlit.logger import get_logger

LOG = get_logger(__name__)
"""Streamlit's logger (its ``logger.level`` applies)."""
WARM_MODULES = ("app.frame", "app.results", "app.joint")
"""What the first page run imports: the frame (``jsae``: torch, TransformerLens) and what the
results pages import (Altair's charts)."""
IMPORTING = threading.Event()
"""Set while the warm-up thread imports the package (a page then waits for that import)."""
DONE = threading.Event()
"""Set when the warm-up has finished, well or not."""


def warm(source: str | None = None) -> float:
    """Import ``WARM_MODULES`` and load ``source`` (default: the app's default source) into the
    shared cache; the seconds it took. Errors are logged, never raised."""
    start = time.perf_counter()
    IMPORTING.set()
    try:
        for module in WARM_MODULES:  # imported here: this is the slow part
            importlib.import_module(module)
        cache = importlib.import_module("app.cache")
        explore = importlib.import_module("jsae.explore")
    except Exception:  # noqa: BLE001 - the page will import it again and show the error
        LOG.exception("warm-up: importing the package failed")
        return time.perf_counter() - start
    finally:
        IMPORTING.clear()
    try:
        cache.get_source(source or explore.default_source(), None)
    except Exception as error:  # noqa: BLE001 - the page loads it again and shows the error
        LOG.warning("warm-up: the default source did not load (%s); the page will say why", error)
    return time.perf_counter() - start


def start(source: str | None = None) -> threading.Thread:
    """Run ``warm`` in a daemon thread (the server does not wait for it)."""

    def run() -> None:
        try:
            LOG.info("warm-up done in %.1f s", warm(source))
        finally:
            DONE.set()

    thread = threading.Thread(target=run, name="jsae-warm-up", daemon=True)
    thread.start()
    return thread


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """``st.App``'s lifespan: start the warm-up, then serve."""
    start()
    yield
