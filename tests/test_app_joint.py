"""The joint ablation on the explorer's pages, driven with AppTest on the tiny source:
causal sparsity's "Removed together" section (the sets' table, their histogram, the
faithfulness curves and score, the downloads, the verdict weighing the joint result), the
curves computed once per run whatever ε, and JSAE vs plain's curves of both pairs.

The expected numbers come from a loop here: the MLP input read by a forward pre-hook on
the model's own MLP module, each set removed through TransformerLens's MLP and sae-lens's
``encode`` (``tests.reference.joint_loop``), the sets and orders from the single-connection
table (|J| and the one-at-a-time diffs), the areas by ``np.trapezoid``. Only the random
order's permutation is the package's (a seeded draw), read off ``prompt_curves``; the random
set is its first as many inputs as the unimportant set has.
"""

import contextlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

from app import cache
from jsae import explore
from jsae.analysis import prompt_curves
from tests.reference import downstream_loop, joint_loop
from tests.test_app import (  # noqa: F401  (module-scoped fixtures)
    JOINT_DOWNLOADS,
    PAGES,
    app,
    chart_specs,
    expected_analysis,
    expected_result,
    loaded,
    no_problems,
    run,
    tiny_source,
)
from tests.test_app_statistics import assert_verdict_shown, chart_data

TEXT = "The quick brown fox jumps over the lazy dog."
LOOP_ORDERS = ("jacobian", "oracle", "random")


def mlp_input(model, tokens, layer):
    """What the model's own MLP module receives, for every position."""
    seen = []
    hook = model.blocks[layer].mlp.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    try:
        model(tokens[None])
    finally:
        hook.remove()
    return seen[0][0].detach()


@contextlib.contextmanager
def one_thread():
    """Thousands of one-row MLP calls: intra-op threads only add waiting (on a busy 2-core
    machine, 40x), so the loop runs on one, and the count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def joint_by_loop(source, layer=0, kind="jsae", eps=0.01, text=TEXT) -> dict:
    """Each set's means and each order's mean-|diff| curve, and the score, by the loop."""
    with one_thread():
        return _joint_by_loop(source, layer, kind, eps, text)


def _joint_by_loop(source, layer, kind, eps, text) -> dict:
    result = expected_result(source, layer, kind, eps, text)
    model, pair = source.model_for(layer, kind), source.pair(layer, kind)
    random_order = prompt_curves(model, pair, result).order[:, -1, 0].numpy()
    table = result.table
    positions = sorted(table["position"].unique())
    x = mlp_input(model, result.prompt.tokens, layer)[positions]
    k_in = pair.k_in
    rows = {name: [] for name in ("unimportant", "important", "random")}
    curves = {order: np.zeros(k_in + 1) for order in LOOP_ORDERS}
    n = 0
    for t, position in enumerate(positions):
        token = table[table["position"] == position]
        in_rank = {f: r for r, f in enumerate(dict.fromkeys(token["in_feature"]))}
        for j, group in token.groupby("out_feature", sort=False):
            n += 1
            features = group["in_feature"].to_numpy()
            jac = np.abs(group["jacobian"].to_numpy(np.float64))
            out_act = float(group["out_act"].iloc[0])

            def diff(removed, t=t, j=j):
                return joint_loop(model, pair, x, {(t, j): list(removed)})[(t, j)]

            small = jac <= eps
            for name, chosen in (("unimportant", small), ("important", ~small)):
                if chosen.any():
                    d = diff(features[chosen])
                    share = abs(d) / out_act if out_act > 0 else np.nan
                    rows[name].append((chosen.sum(), abs(d), share))
            by_rank = sorted(features, key=in_rank.get)
            orders = {
                "jacobian": features[np.argsort(jac, kind="stable")],
                "oracle": features[np.argsort(np.abs(group["diff"].to_numpy()), kind="stable")],
                "random": [by_rank[i] for i in random_order[t]],
            }
            for order, ranked in orders.items():
                for m in range(1, k_in + 1):
                    d = diff(ranked[:m])
                    curves[order][m] += abs(d)
                    if order == "random" and m == small.sum():  # as many as the unimportant
                        share = abs(d) / out_act if out_act > 0 else np.nan
                        rows["random"].append((m, abs(d), share))
    fraction = np.arange(k_in + 1) / k_in
    curves = {order: total / n for order, total in curves.items()}
    area = {order: np.trapezoid(curve, fraction) for order, curve in curves.items()}
    score = (area["random"] - area["jacobian"]) / (area["random"] - area["oracle"])
    sets = {
        name: pd.DataFrame(values, columns=["size", "abs_diff", "share"])
        for name, values in rows.items()
    }
    return {"sets": sets, "curves": curves, "score": score, "pairs": n}


def chart_rows(at, index: int) -> pd.DataFrame:
    """The rows the page's ``index``-th chart (a single mark) draws."""
    chart = at.get("vega_lite_chart")[index].proto
    spec = json.loads(chart.spec)
    (data,) = [d for d in chart.datasets if d.name == spec["data"]["name"]]
    return convert_arrow_bytes_to_pandas_df(data.data.data)


def sets_table(at) -> pd.DataFrame:
    (table,) = [d.value for d in at.dataframe if "set" in d.value.columns]
    return table.set_index("set")


def test_causal_sparsity_shows_the_sets_removed_together(app, loaded):  # noqa: F811
    at = app.run()
    at.text_area(key="prompt_text").set_value(TEXT).run()
    run(at)
    no_problems(at)
    found = joint_by_loop(loaded)
    assert any(s.value == "Removed together" for s in at.subheader)
    shown = sets_table(at)
    for name, rows in found["sets"].items():
        assert shown.loc[name, "pairs"] == len(rows)
        if len(rows):
            assert shown.loc[name, "mean_size"] == pytest.approx(rows["size"].mean())
            assert shown.loc[name, "mean_abs_diff"] == pytest.approx(
                rows["abs_diff"].mean(), rel=1e-4, abs=1e-6
            )
            assert shown.loc[name, "mean_share"] == pytest.approx(
                rows["share"].mean(), rel=1e-4, abs=1e-6
            )
    # The score with its interval, and the curves: each order's mean |diff| against m / k_in.
    (score,) = [m for m in at.metric if m.label == "Faithfulness score"]
    assert float(score.value) == pytest.approx(found["score"], rel=5e-3, abs=1e-3)
    assert "–" in score.delta  # the bootstrap interval
    specs = chart_specs(at)
    index = next(
        i
        for i, s in enumerate(specs)
        if s.get("layer", [{}])[0].get("encoding", {}).get("color", {}).get("field")
        == "order_label"
    )
    lines, text = chart_data(at, index)
    for order, curve in found["curves"].items():
        drawn = lines[lines["order"] == order].sort_values("m")
        np.testing.assert_allclose(drawn["mean_abs_diff"], curve, rtol=1e-4, atol=1e-6)
    assert text["label"].iloc[0].startswith(f"score {score.value}")
    # The histogram: one bar group per set, on [0, the largest |diff| of a set].
    histogram = specs[index - 1]
    assert histogram["encoding"]["color"]["field"] == "set"
    lo, hi = histogram["encoding"]["x"]["scale"]["domain"]
    top = max(r["abs_diff"].max() for r in found["sets"].values() if len(r))
    assert lo == 0 and hi == pytest.approx(top, rel=1e-5)
    # The verdict is the one that weighs the joint result, and says so under "Why?".
    verdict = expected_analysis(loaded, text=TEXT).verdict
    assert_verdict_shown(at, verdict)
    (why,) = [e for e in at.expander if e.label == "Why?"]
    assert "Faithfulness score" in " ".join(m.value for m in why.markdown)
    labels = [b.label for b in at.get("download_button")]
    assert labels[:2] == JOINT_DOWNLOADS


@pytest.fixture
def curve_calls(monkeypatch):
    """Count the app's joint ablations (an empty cache first, so a call is needed)."""
    cache.get_curves.clear()
    cache.get_analysis.clear()
    calls = []
    real = cache.prompt_curves

    def counting(*args, **kwargs):
        calls.append(args[1].layer)
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "prompt_curves", counting)
    yield calls
    cache.get_curves.clear()
    cache.get_analysis.clear()


def test_the_curves_are_computed_once_per_run_whatever_eps(app, loaded, curve_calls):  # noqa: F811
    at = run(app.run())
    assert len(curve_calls) == 1
    for eps in (0.3, 0.05):
        at.text_input(key="eps").set_value(repr(eps)).run()
        no_problems(at)
        # the sets are read off the same curves at the new ε
        table = expected_result(loaded, eps=eps).table
        small = (np.abs(table["jacobian"]) <= eps).groupby(
            [table["position"], table["out_feature"]]
        )
        sizes = small.sum()
        assert sets_table(at).loc["unimportant", "mean_size"] == pytest.approx(
            sizes[sizes > 0].mean()
        )
    at.number_input(key="tau").set_value(0.2).run()
    at.button_group(key="joint_layout").set_value("facet").run()
    at.button_group(key="joint_value").set_value("share").run()
    at.button_group(key="joint_curve").set_value("mean_share").run()
    no_problems(at)
    assert len(curve_calls) == 1
    for page in (PAGES["effect"], PAGES["compare"], PAGES["sparsity"]):
        at.switch_page(page).run()
        no_problems(at)
    assert len(curve_calls) == 1


def test_jsae_vs_plain_draws_both_pairs_curves_and_scores(app, loaded):  # noqa: F811
    app.query_params["layer"] = "1"
    at = app.run()
    at.text_area(key="prompt_text").set_value(TEXT).run()
    run(at)
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert any(s.value.startswith("Removed together") for s in at.subheader)
    lines = chart_rows(at, len(chart_specs(at)) - 2)  # above the downstream KL
    assert set(lines["kind"]) == set(explore.COMPARED)
    assert set(lines["order"]) == set(explore.COMPARED_ORDERS)
    found_by_kind = {kind: joint_by_loop(loaded, 1, kind) for kind in explore.COMPARED}
    for kind, found in found_by_kind.items():
        for order, curve in found["curves"].items():
            drawn = lines[(lines["kind"] == kind) & (lines["order"] == order)].sort_values("m")
            np.testing.assert_allclose(drawn["relative_abs_diff"], curve / curve[-1], rtol=1e-4)
        (pair,) = set(lines.loc[lines["kind"] == kind, "pair"])  # the legend's name
        assert pair.startswith(f"{kind}: score ")
        assert float(pair.split()[2]) == pytest.approx(found["score"], rel=5e-3, abs=1e-3)
    at.button_group(key="cmp_joint_curve").set_value("mean_abs_diff").run()
    lines = chart_rows(at, len(chart_specs(at)) - 2)  # above the downstream KL
    drawn = lines[(lines["kind"] == "plain") & (lines["order"] == "jacobian")]
    want = found_by_kind["plain"]["curves"]["jacobian"]
    np.testing.assert_allclose(drawn["mean_abs_diff"], want, rtol=1e-4)
    captions = " ".join(c.value for c in at.caption)
    assert "0 no better than random" in captions


def test_jsae_vs_plain_draws_both_pairs_downstream_kl(app, loaded):  # noqa: F811
    """The KL drawn with nothing kept and with everything kept, against a loop: every output
    feature loses all its active inputs (sae-lens encode/decode, the model's own hook)."""
    app.query_params["layer"] = "1"
    at = app.run()
    at.text_area(key="prompt_text").set_value(TEXT).run()
    run(at)
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert any(s.value.startswith("Downstream: what the model loses") for s in at.subheader)
    lines = chart_rows(at, len(chart_specs(at)) - 1)
    assert set(lines["kind"]) == set(explore.COMPARED)
    assert set(lines["order"]) == {"jacobian", "oracle", "random"}
    for kind in explore.COMPARED:
        result = expected_result(loaded, 1, kind, 0.01, TEXT)
        model, pair = loaded.model_for(1, kind), loaded.pair(1, kind)
        table = result.table
        positions = sorted(table["position"].unique().tolist())
        x = mlp_input(model, result.prompt.tokens, 1)
        every = {
            (int(p), int(j)): g["in_feature"].tolist()
            for (p, j), g in table.groupby(["position", "out_feature"])
        }
        with one_thread():
            kl = downstream_loop(model, pair, result.prompt.tokens, x, positions, every)
        drawn = lines[lines["kind"] == kind]
        none_kept = drawn[drawn["m_kept"] == 0]["kl_mean"].to_numpy()
        np.testing.assert_allclose(none_kept, kl.mean().item(), rtol=1e-4)  # every order
        all_kept = drawn[drawn["m_kept"] == pair.k_in]
        assert (all_kept["kl_mean"] == 0).all()
        assert (all_kept["kept_connections"] == pair.k_in * pair.k_out).all()
    shown = [d.value for d in at.dataframe if "fewer than random" in d.value.columns]
    assert len(shown) == 1 and len(shown[0]) == 2 * 3


def y_fields(spec: dict) -> set[str]:
    """The fields a (layered) spec draws on y."""
    units = [spec, *spec.get("layer", [])]
    return {u["encoding"]["y"]["field"] for u in units if "y" in u.get("encoding", {})}


def curve_spec(at) -> dict:
    """The spec of causal sparsity's faithfulness curves (coloured by removal order)."""
    (spec,) = [
        s
        for s in chart_specs(at)
        if s.get("layer", [{}])[0].get("encoding", {}).get("color", {}).get("field")
        == "order_label"
    ]
    return spec


def test_the_joint_sections_choices_come_from_the_link_and_the_url_follows(app):  # noqa: F811
    """Every control of the joint sections is a display setting: the link's values reach
    the widgets and the charts, a change goes back into the URL, a bad value warns."""
    link = {"joint_value": "share", "joint_layout": "facet", "joint_log": "0"}
    link |= {"joint_curve": "mean_share", "cmp_joint_curve": "mean_abs_diff"}
    app.query_params.update({**link, "layer": "1", "text": TEXT, "run": "1"})
    at = app.run()
    no_problems(at)
    assert at.button_group(key="joint_value").value == "share"
    assert at.button_group(key="joint_layout").value == "facet"
    assert at.toggle(key="joint_log").value is False
    assert at.button_group(key="joint_curve").value == "mean_share"
    assert y_fields(curve_spec(at)) == {"mean_share"}
    for name, raw in link.items():
        assert at.query_params[name] == raw, name
    # a change goes into the URL; back at the default it leaves the link
    at.button_group(key="joint_curve").set_value("mean_abs_diff").run()
    assert "joint_curve" not in at.query_params
    assert y_fields(curve_spec(at)) == {"mean_abs_diff"}
    at.button_group(key="joint_curve").set_value("mean_share").run()
    assert at.query_params["joint_curve"] == "mean_share"
    at.toggle(key="joint_log").set_value(True).run()
    assert "joint_log" not in at.query_params
    # JSAE vs plain's curve choice, from the link, then changed
    at.switch_page(PAGES["compare"]).run()
    no_problems(at)
    assert at.button_group(key="cmp_joint_curve").value == "mean_abs_diff"
    comparison = chart_specs(at)[-2]  # above the downstream KL
    assert y_fields(comparison) == {"mean_abs_diff"}
    at.button_group(key="cmp_joint_curve").set_value("mean_share").run()
    assert at.query_params["cmp_joint_curve"] == "mean_share"
    assert at.query_params["joint_curve"] == "mean_share"  # kept off its page


def test_a_bad_joint_choice_in_the_link_warns_and_keeps_the_default(app):  # noqa: F811
    app.query_params.update({"joint_curve": "area", "cmp_joint_curve": "kl"})
    at = app.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert (
        "Ignored joint_curve='area' from the URL: it must be one of mean_abs_diff, mean_share; "
        "using mean_abs_diff." in warnings
    )
    assert any("Ignored cmp_joint_curve='kl'" in w for w in warnings)
    assert "joint_curve" not in at.query_params and "cmp_joint_curve" not in at.query_params
