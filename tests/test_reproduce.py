"""Reproduce this view: the snippet the Causal sparsity page shows, executed here, gives the
numbers the page shows for the same link (mean |diff| on each side of ε, their ratio, the
verdict), and its ``jsae ablate`` line, read by the real argument parser, names the same
settings."""

import shlex

import pytest
from streamlit.testing.v1 import AppTest

from jsae import explore
from jsae.cli import build_parser, main
from jsae.cli.options import resolve_mode
from jsae.cli.rerun import resolve_settings
from jsae.stats import Tolerance
from tests.test_app import (  # noqa: F401
    APP,
    TIMEOUT,
    boxes,
    loaded,
    metrics,
    no_problems,
    tiny_source,
)

__all__ = ["loaded", "tiny_source"]

TRICKY = 'It\'s "quoted" — with $HOME, `ticks`\nand a second line; rm -rf /'


def parsed(line: str):
    """``jsae ablate``'s arguments as the real parser reads ``line``, the defaults filled in
    as the command fills them (``resolve_settings``)."""
    words = shlex.split(line)
    assert words[:2] == ["jsae", "ablate"]
    args = build_parser().parse_args(words[1:])
    resolve_settings(args)
    return args


def assert_cli_names(args, key: explore.RunKey, eps: float, tau: float, tol: Tolerance) -> None:
    assert (args.source, args.model, args.layer, args.pair) == (
        key.source,
        key.model,
        key.layer,
        key.kind,
    )
    mode, scale = resolve_mode(args.mode, args.scale)
    assert mode == key.mode
    if mode == "scale":
        assert scale == key.scale
    assert (args.pairs, args.seed) == (key.pairs, key.seed if key.pairs != "all" else 0)
    assert (args.eps, args.tau, args.atol, args.rtol) == (eps, tau, tol.atol, tol.rtol)
    assert args.prompt == key.text
    assert args.joint is True  # the page's verdict weighs the joint ablation, sampled or not


@pytest.mark.parametrize(
    "key",
    [
        explore.RunKey("demo", None, 1, "jsae", "unit", 1.0, TRICKY),
        explore.RunKey("a folder/with space", "gpt2", 0, "plain", "scale", 0.25, "x", "random", 7),
        explore.RunKey("planted", None, 2, "small_k", "zero", 1.0, "y", "equal_rank"),
    ],
)
def test_the_command_line_names_the_views_settings(key):
    tol = Tolerance(atol=0.05, rtol=0.25)
    how = explore.Reproduction(key, 0.02, tau=0.003, tolerance=tol)
    assert_cli_names(parsed(how.cli()), key, 0.02, 0.003, tol)
    assert "max_tokens" not in how.python() and "--max-tokens" not in how.cli()


def test_a_token_limit_ablates_the_same_tokens():
    key = explore.RunKey("demo", None, 1, "jsae", "unit", 1.0, "text")
    how = explore.Reproduction(key, 0.01, max_tokens=64)
    assert "max_tokens=64" in how.python()
    assert parsed(how.cli()).max_tokens == 63  # BOS counts in the limit, is never ablated


def test_eps_is_checked():
    key = explore.RunKey("demo", None, 1, "jsae", "unit", 1.0, "text")
    with pytest.raises(Exception, match="ε"):
        explore.Reproduction(key, -1.0)


def page_numbers(at: AppTest) -> dict[str, str]:
    shown = metrics(at)
    return {
        name: shown[name]
        for name in (
            "Important mean |diff|",
            "Unimportant mean |diff|",
            "Ratio of the two",
            "Important connections",
            "Unimportant connections",
        )
    }


def snippet_numbers(namespace: dict) -> dict[str, str]:
    summary, analysis = namespace["summary"], namespace["analysis"]
    fmt = explore.format_number
    return {
        "Important mean |diff|": fmt(summary.loc["important", "mean_abs_diff"]),
        "Unimportant mean |diff|": fmt(summary.loc["unimportant", "mean_abs_diff"]),
        "Ratio of the two": fmt(analysis.statistics.ratio, 3),
        "Important connections": f"{int(summary.loc['important', 'connections']):,}",
        "Unimportant connections": f"{int(summary.loc['unimportant', 'connections']):,}",
    }


LINKS = {
    "every connection, scaled": {"mode": "scale", "scale": "0.5", "eps": "0.02"},
    "random pairs": {"pairs": "random", "seed": "3", "eps": "0.005", "tau": "0.01"},
}


@pytest.mark.parametrize("link", LINKS.values(), ids=LINKS.keys())
def test_the_snippet_gives_the_pages_numbers(tiny_source, monkeypatch, capsys, link):  # noqa: F811
    monkeypatch.setenv(explore.DEFAULT_SOURCE_ENV, tiny_source)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    text = "Alice: hi! Bob: hello, Alice. def f(x): return x + 1"
    at.query_params.update({"layer": "1", "text": text, "run": "1", "tol_atol": "0.05", **link})
    at.run()
    no_problems(at)
    blocks = {block.language: block.value for block in at.code}
    python, line = blocks["python"], blocks["bash"]
    namespace: dict = {}
    exec(compile(python, "<reproduce>", "exec"), namespace)  # noqa: S102
    assert snippet_numbers(namespace) == page_numbers(at)
    assert any(namespace["analysis"].verdict.sentence in box for box in boxes(at))
    # the page removes inputs together on a sampled run too: so does the snippet
    joint = namespace["analysis"].joint
    assert joint is not None
    assert any(explore.format_number(joint.score, 3) in m.value for m in at.metric), joint.score
    assert "ratio important/unimportant:" in capsys.readouterr().out
    ran = namespace["result"].provenance  # what the snippet ran, as the engine records it
    mode, scale = link.get("mode", "unit"), float(link.get("scale", 1.0))
    assert (ran.layer, ran.kind, ran.mode, ran.step, ran.eps) == (1, "jsae", mode, scale, ran.eps)
    assert ran.pairs == link.get("pairs", "all")  # sampled as the app samples (sample_result)
    args = parsed(line)
    assert (args.source, args.layer, args.pair, args.prompt) == (tiny_source, 1, "jsae", text)
    assert args.eps == float(link["eps"]) == ran.eps
    assert resolve_mode(args.mode, args.scale) == (mode, scale)
    assert (args.pairs, args.seed) == (link.get("pairs", "all"), int(link.get("seed", 0)))
    assert args.atol == 0.05 and args.tau == float(link.get("tau", args.tau))
    capsys.readouterr()
    assert main([*shlex.split(line)[1:], "--no-progress"]) == 0  # the command itself runs
    printed = capsys.readouterr().out
    assert f"verdict: {namespace['analysis'].verdict.headline}" in printed
