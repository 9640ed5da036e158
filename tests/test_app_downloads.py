"""Every chart's table downloads: JSAE vs plain gives each pair's connections at ε, the token
explorer the dose-response curve on screen. The bytes a click would serve (the download's
deferred callable, recorded as the page registers it) are compared with the package's
frames computed here: ``ablate`` of each pair split at ε, ``dose_response`` of the
connection."""

import io

import pandas as pd
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.dose import dose_response
from jsae.sandwich import Sandwich
from tests.test_app import (  # noqa: F401
    APP,
    PAGES,
    TIMEOUT,
    expected_table,
    first_prompt,
    loaded,
    no_problems,
    run,
    tiny_source,
)

__all__ = ["loaded", "tiny_source"]


@pytest.fixture
def downloads(monkeypatch) -> dict[str, object]:
    """{file name: the callable that makes its bytes} of every deferred download the pages
    register (what a click on the button would run)."""
    found: dict[str, object] = {}
    original = MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        found[file_name] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return found


@pytest.fixture
def app(tiny_source, monkeypatch):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as pandas writes CSV (no index), independent of the app's writer."""
    return frame.to_csv(index=False).encode("utf-8")


def read(data: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(data), float_precision="round_trip")


def test_jsae_vs_plain_downloads_both_pairs_connections(app, loaded, downloads):  # noqa: F811
    app.query_params.update({"layer": "1", "eps": "0.02"})
    at = run(app.run())
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    labels = [b.label for b in at.get("download_button")]
    assert labels[-2:] == ["Download JSAEs (CSV)", "Download Traditional SAEs (CSV)"]
    for kind in ("jsae", "plain"):
        key = explore.RunKey("x", None, 1, kind, "unit", 1.0, first_prompt()[1])
        name = explore.download_name(key, "csv")
        data = downloads[name]()
        got = read(data)
        want = expected_table(loaded, layer=1, kind=kind, eps=0.02)
        assert sorted(got.columns) == sorted(want.columns) and len(got) == len(want)
        assert data == csv_bytes(want[list(got.columns)])
        assert got["important"].sum() == (want["jacobian"].abs() > 0.02).sum()


def test_the_dose_response_curve_downloads(app, loaded, downloads):  # noqa: F811
    table = expected_table(loaded)
    row = table[table["position"] == 3].iloc[5]
    in_f, out_f = int(row["in_feature"]), int(row["out_feature"])
    app.query_params.update(
        {"run": "1", "position": "3", "in_feature": str(in_f), "out_feature": str(out_f)}
    )
    at = app.run()
    at.switch_page(PAGES["tokens"]).run()
    no_problems(at)
    assert "Download the curve (CSV)" in [b.label for b in at.get("download_button")]
    key = explore.RunKey("x", None, 0, "jsae", "unit", 1.0, first_prompt()[1])
    data = downloads[explore.dose_download_name(key, 3, in_f, out_f)]()
    x = explore.token_input(loaded.model, 0, first_prompt()[1], 3)
    want = dose_response(Sandwich(loaded.model, loaded.pair(0)), x, in_f, out_f).curve
    assert data == csv_bytes(want)
    assert len(read(data)) == len(want) > 10
