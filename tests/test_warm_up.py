"""``serve.py``'s warm-up (``app.warm_up``): at server start a background thread imports the
app and loads the default source into the cache every session reads, so the first visitor's
page does not load it again; a source that fails to load is logged, never raised."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from streamlit.web.server.app_discovery import discover_asgi_app

from app import cache, warm_up
from jsae.loading import save_source
from tests.helpers import tiny_model, tiny_pairs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    model = tiny_model()
    return str(save_source(tmp_path_factory.mktemp("warm") / "src", model, tiny_pairs(model)))


def test_the_warm_up_fills_the_cache_the_pages_read(source, monkeypatch):
    thread = warm_up.start(source)
    thread.join(timeout=120)
    assert not thread.is_alive() and warm_up.DONE.is_set() and not warm_up.IMPORTING.is_set()

    def load_again(*args, **kwargs):
        raise AssertionError("the page loaded the source again: the warm-up did not cache it")

    monkeypatch.setattr(cache, "load_source", load_again)
    src = cache.get_source(source, None)  # what the frame calls for the sidebar's choice
    assert src.name == source and src.pair(0, "jsae") is not None


def test_a_source_that_fails_is_logged_not_raised(tmp_path, monkeypatch):
    missing = str(tmp_path / "missing")
    logged = []
    monkeypatch.setattr(warm_up.LOG, "warning", lambda *args: logged.append(args[0] % args[1:]))
    seconds = warm_up.warm(missing)
    assert seconds >= 0 and not warm_up.IMPORTING.is_set()
    assert len(logged) == 1 and "missing" in logged[0] and "the page will say why" in logged[0]


def test_serve_py_is_streamlits_app_around_the_script_with_the_warm_up(monkeypatch):
    """``streamlit run serve.py`` finds an ``st.App`` (Streamlit's own discovery) whose
    script is ``streamlit_app.py`` and whose lifespan starts the warm-up."""
    found = discover_asgi_app(ROOT / "serve.py")
    assert found.is_asgi_app and found.app_name == "app"
    tree = ast.parse((ROOT / "serve.py").read_text())
    (call,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "st.App"
    ]
    assert ast.literal_eval(call.args[0]) == "streamlit_app.py"
    assert {k.arg: ast.unparse(k.value) for k in call.keywords} == {"lifespan": "lifespan"}
    assert (ROOT / "streamlit_app.py").is_file()
    started = []
    monkeypatch.setattr(warm_up, "start", lambda: started.append(True))

    async def serve_once() -> None:
        async with warm_up.lifespan(None):
            assert started == [True]  # before the server serves

    asyncio.run(serve_once())
