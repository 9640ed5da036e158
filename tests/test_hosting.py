import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import torch

from jsae.ablation import ablate
from jsae.errors import InputError
from jsae.hosting import BusyError, HostedConfig, SlotLimiter, clean_prompt
from jsae.sandwich import Sandwich
from tests.helpers import tiny_model, tiny_pair

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x + 1",
    "- apples\n- pears\n- more apples",
    "Alice: hi!\nBob: hello, Alice.",
    "A sparse autoencoder reads the MLP.",
    "the the the the the the",
    "Bob: pears? Alice: apples.",
    "return the quick fox",
]


def test_settings_from_env_and_secrets():
    assert HostedConfig.from_settings({}) == HostedConfig()
    secrets = {"hosted": {"enabled": True, "sources": ["demo", "me/p/a:v1"], "max_concurrent": 3}}
    cfg = HostedConfig.from_settings({}, secrets)
    assert cfg.enabled and cfg.sources == ("demo", "me/p/a:v1") and cfg.max_concurrent == 3
    env = {
        "JSAE_HOSTED": "1",
        "JSAE_ALLOWED_SOURCES": "demo, x/y/z:v0",
        "JSAE_MAX_PROMPT_TOKENS": "64",
    }
    cfg = HostedConfig.from_settings(env, secrets)
    assert cfg.sources == ("demo", "x/y/z:v0") and cfg.max_prompt_tokens == 64
    assert cfg.max_concurrent == 3, "the environment wins key by key, secrets fill the rest"
    with pytest.raises(InputError, match="JSAE_HOSTED must be true or false"):
        HostedConfig.from_settings({"JSAE_HOSTED": "maybe"})
    with pytest.raises(InputError, match="max_concurrent must be a whole number"):
        HostedConfig.from_settings({"JSAE_MAX_CONCURRENT": "two"})
    with pytest.raises(InputError, match="at least 1"):
        HostedConfig(max_concurrent=0)


@pytest.mark.parametrize(
    "source",
    ["/etc", "../../jsae/assets/demo", "other/project/pairs:v0", "demo ", "DEMO", "demo\x00", "~"],
)
def test_allowlist_refuses_everything_else(source):
    cfg = HostedConfig(enabled=True, sources=("demo",))
    with pytest.raises(InputError, match="only serves its configured sources"):
        cfg.check_source(source)
    assert cfg.check_source("demo") == "demo"
    with pytest.raises(InputError, match="does not load models"):
        cfg.check_source("demo", model="gpt2")
    assert HostedConfig(enabled=False).check_source(source) == source


def test_clean_prompt_drops_control_characters_only():
    text, removed = clean_prompt("a\x00b\x1b[31mc\td\ne\r\x7f\u0085é")
    assert text == "ab[31mc\td\ne\ré" and removed == 4


def test_slot_limiter_caps_concurrency_and_reports_waiting():
    limiter = SlotLimiter(2)
    waited = []
    inside = threading.Barrier(2)

    def work(i):
        with limiter.slot(on_wait=lambda: waited.append(i)):
            if i < 2:
                inside.wait(timeout=10)  # the first two hold their slots together
            time.sleep(0.05)
        return i

    with ThreadPoolExecutor(6) as pool:
        first = [pool.submit(work, i) for i in range(2)]
        time.sleep(0.01)
        rest = [pool.submit(work, i) for i in range(2, 6)]
        results = [f.result() for f in first + rest]
    assert results == list(range(6))
    assert limiter.peak == 2 and limiter.in_use == 0
    assert waited, "later experiments had to wait for a free slot"


def test_slot_limiter_times_out_with_a_clear_error():
    limiter = SlotLimiter(1)
    with limiter.slot(), pytest.raises(BusyError, match="stayed busy"), limiter.slot(timeout=0.05):
        pass
    assert limiter.in_use == 0


def test_concurrent_sessions_on_one_shared_model_do_not_corrupt_each_other():
    """Eight threads share one model and sandwich (as the app's sessions share them through
    st.cache_resource) and must get exactly what each prompt gives when run alone."""
    model = tiny_model()
    pair = tiny_pair(model, layer=1)
    sandwich = Sandwich(model, pair)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    alone = {p: ablate(model, pair, p, sandwich=sandwich).table for p in PROMPTS}
    start = threading.Barrier(len(PROMPTS))

    def session(prompt):
        start.wait(timeout=30)
        return [ablate(model, pair, prompt, sandwich=sandwich).table for _ in range(3)]

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = dict(zip(PROMPTS, pool.map(session, PROMPTS), strict=True))
    for prompt, tables in together.items():
        for table in tables:
            pd.testing.assert_frame_equal(table, alone[prompt])
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=0, rtol=0)
    assert not any(hp._forward_hooks for hp in model.hook_dict.values()), "no hook left behind"
