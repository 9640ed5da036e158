"""The explorer's "Log to W&B" action, in W&B offline mode (nothing reaches the network)."""

import json

import wandb
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.loading import load_source
from tests.test_app import expected_analysis, tiny_source  # noqa: F401  (module-scoped fixture)
from tests.test_wandb_log import FAKE_KEY, of_kind, offline, read_records  # noqa: F401


def test_log_to_wandb_writes_an_offline_run(tiny_source, offline, monkeypatch):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    at.button(key="run_button").click().run()
    assert not at.exception and not at.error
    at.button(key="wandb_log").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (done,) = [s.value for s in at.success if "logged to W&B offline" in s.value]
    runs = list((offline / "wandb-dir").rglob("offline-run-*"))
    assert len(runs) == 1 and str(runs[0]) in done
    records = read_records(runs[0])
    assert records, "the offline run's transaction log has records"
    # The run's summary carries the verdict the page showed (analyse's, computed here).
    summary = {}
    for record in of_kind(records, "summary"):
        summary |= {item.key: json.loads(item.value_json) for item in record.update if item.key}
    found = expected_analysis(load_source(tiny_source)).verdict
    assert summary["verdict/sentence"] == found.sentence
    assert summary["verdict/level"] == found.level
    for path in runs[0].rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
    shown = "\n".join(str(el.proto) for el in [*at.main, *at.sidebar])
    assert FAKE_KEY not in shown


def test_log_to_wandb_failure_is_an_error_not_a_crash(tiny_source, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    wandb.teardown()
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    at.button(key="run_button").click().run()
    at.button(key="wandb_log").click().run()
    assert not at.exception
    assert any("W&B" in e.value for e in at.error)
    assert at.metric, "the results stay on the page"
    wandb.teardown()
