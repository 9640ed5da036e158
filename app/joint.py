"""The joint ablation on the results pages: causal sparsity's "Removed together" section
(each set's numbers, their histograms, the faithfulness curves and score, the downloads) and
JSAE vs plain's curves of both pairs on one chart.

The numbers are the analysis' (``Analysis.joint``, from the cached curves, so the verdict
above weighs the same result); the rows the histograms bin come from the same cached curves
(``cache.get_joint_sets``). Nothing here computes.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from app import cache, results, state
from app.downloads import download_button
from jsae import charts, explore
from jsae.analysis import Analysis, JointStatistics

SET_TABLE = {
    "set": st.column_config.TextColumn("Set removed together"),
    "pairs": st.column_config.NumberColumn(
        "(token, j)", format="%d", help="Output features j of all tokens whose set is not empty."
    ),
    "mean_size": st.column_config.NumberColumn("Inputs removed", format="%.3g"),
    "mean_abs_diff": st.column_config.NumberColumn("Mean |diff|", format="%.4g"),
    "mean_share": st.column_config.NumberColumn(
        "Share of j moved", format="percent", help="Mean |diff| / out_act."
    ),
    "exit_share": st.column_config.NumberColumn(
        "j left the top k", format="percent", help="Share of (token, j) where j exited."
    ),
    "mean_additivity_gap": st.column_config.NumberColumn(
        "Additivity gap",
        format="%.4g",
        help="Mean |joint diff − the sum of the set's one-at-a-time diffs|.",
    ),
}
"""The columns of the sets' table (``JointStatistics.sets``) the page shows."""
SCORE_HELP = (
    "(A_random − A_|J|) / (A_random − A_oracle), A the area under a mean-|diff| curve: 1 when "
    "removing the smallest |J| first is as harmless as the single-connection oracle, 0 when it "
    "is no better than random, negative when worse. The interval resamples tokens."
)
SCORE_SENTENCE = (
    "The score reads the areas under the curves: 1 means |J| ranks j's inputs as well as "
    "their one-at-a-time effects do (the oracle), 0 no better than random, below 0 worse "
    "than random."
)


def removed_together(key: explore.RunKey, eps: float, analysis: Analysis | None) -> None:
    """Causal sparsity's section: what removing whole sets of inputs at once does."""
    st.subheader("Removed together")
    if analysis is None or analysis.joint is None:
        return  # the analysis' error is already on the page
    joint = analysis.joint
    if key.pairs != "all":
        st.caption(
            "Every input of every ablated token, whatever the connection sampler kept above "
            "(as `jsae ablate --joint` with `--pairs`)."
        )
    st.markdown(
        "Above, one input feature moved at a time. Here each output feature j loses a whole "
        f"set of its inputs at once: all its unimportant ones (|J| ≤ ε = {eps:g}), all its "
        "important ones, or as many random ones as it has unimportant."
    )
    row = st.container(horizontal=True, wrap=True, gap="medium", vertical_alignment="center")
    left = row.container(width=results.METRIC_WIDTH)
    right = row.container(width="stretch")  # the table wraps below when the row is narrow
    results.interval_metric(
        left, "Faithfulness score", joint.score, joint.score_ci, help=SCORE_HELP
    )
    right.dataframe(
        joint.sets[list(SET_TABLE)], column_config=SET_TABLE, hide_index=True, width="stretch"
    )
    sets = cache.load_joint_sets(key, eps)
    if sets is None:
        return
    set_histogram(sets)
    curves(joint)
    c1, c2, _ = st.columns([1, 1, 2])
    download_button(
        c1, sets, "csv", "Download the sets (CSV)", explore.download_name(key, "csv", "joint_sets")
    )
    download_button(
        c2,
        joint.curves,
        "csv",
        "Download the curves (CSV)",
        explore.download_name(key, "csv", "faithfulness_curves"),
    )
    st.caption(
        f"The sets: one row per (token, j, set) ({len(sets):,} rows: {', '.join(sets.columns)}; "
        "`predicted` is −Σ s·J over the set, `additive` the sum of its one-at-a-time diffs). "
        "The curves: one row per (order, m)."
    )


def set_histogram(sets) -> None:
    controls = st.container(horizontal=True, wrap=True, gap="small", vertical_alignment="bottom")
    value = controls.segmented_control(
        "Value",
        state.display_choices("joint_value"),
        format_func={"abs_diff": "|diff|", "share": "Share of j's activation"}.get,
        key="joint_value",
        persist_state="session",
    )
    layout = controls.segmented_control(
        "View",
        state.display_choices("joint_layout"),
        format_func=results.HIST_LAYOUTS.get,
        key="joint_layout",
        persist_state="session",
    )
    state.display_choices("joint_log")
    log_count = controls.toggle(
        "Log", key="joint_log", persist_state="session", help="Count on a log scale."
    )
    value = value or explore.DISPLAY_SETTINGS["joint_value"].default
    binned = explore.joint_bins(sets, value, bins=60)
    options = {"value": value, "log_count": bool(log_count)}
    if layout == "facet":
        for chart in charts.set_histogram_panels(binned, **options):
            st.altair_chart(chart, width="stretch")
    else:
        st.altair_chart(charts.set_histogram(binned, **options), width="stretch")
    lo, hi = binned.attrs["range"]
    st.caption(
        f"Each set's (token, j) binned in numpy into 60 bins on [{lo:.3g}, {hi:.3g}]; empty "
        "bins are not drawn. If the Jacobian's sparsity is causal, the unimportant set sits "
        "near 0 and well left of the random one."
    )


CURVE_BUTTONS = {
    "relative_abs_diff": "Relative to removing all",
    "mean_abs_diff": "Mean |diff|",
    "mean_share": "Mean share of j",
}


def curve_value(key: str) -> str:
    """What the faithfulness curves draw: the display setting ``key``'s value (its
    default when the control is cleared)."""
    options = state.display_choices(key)
    chosen = st.segmented_control(
        "Curve",
        list(options),
        format_func=CURVE_BUTTONS.get,
        key=key,
        persist_state="session",
    )
    return chosen or explore.DISPLAY_SETTINGS[key].default


def curves(joint: JointStatistics) -> None:
    st.markdown("**Removing j's inputs m at a time, in four orders**")
    y = curve_value("joint_curve")
    label = explore.score_label(joint)
    st.altair_chart(charts.faithfulness_curves(joint.curves, label, y=y), width="stretch")
    st.caption(
        "Each line removes the first m of j's inputs together, in one order, and draws the "
        f"mean over every (token, j) against m / k_in (k_in = {joint.k_in}). {SCORE_SENTENCE}"
    )


def compare_curves(analyses: Mapping[str, Analysis], titles: Mapping[str, str]) -> None:
    """JSAE vs plain's section: both pairs' curves and scores on one chart."""
    joints = {kind: a.joint for kind, a in analyses.items() if a.joint is not None}
    if not joints:
        return
    st.subheader("Removed together: which inputs can go?")
    y = curve_value("cmp_joint_curve")
    frame = explore.curve_frame(joints, explore.COMPARED_ORDERS)
    scores = explore.score_frame(joints)
    st.altair_chart(charts.faithfulness_comparison(frame, scores, y=y), width="stretch")
    shown = "; ".join(
        f"{titles[kind]} {explore.score_label(joint)}" for kind, joint in joints.items()
    )
    st.caption(
        "Each pair removes its output features' inputs m at a time: by |J|, smallest first "
        "(bold), in a random order and by their one-at-a-time |diff| (the oracle, thin), and "
        'draws the mean over every (token, j); "relative" divides a pair\'s curves by its '
        f"mean |diff| with every input removed, which leaves its score as it is. "
        f"{SCORE_SENTENCE} Scores: {shown}."
    )


KL_TABLE = {
    "pair": st.column_config.TextColumn("Pair"),
    "keep by": st.column_config.TextColumn("Each output feature"),
    "area": st.column_config.NumberColumn(
        "Area", format="%.4g", help="Under mean KL against kept connections per token."
    ),
    "relative area": st.column_config.NumberColumn(
        "Relative area", format="%.4g", help="The same over kept / (k_in · k_out), 0 .. 1."
    ),
    "fewer than random": st.column_config.NumberColumn(
        "N× fewer than random",
        format="%.3g",
        help="Median over budgets of how many times more connections random inputs need for "
        "the same KL (2: half as many; below 1: worse than random).",
    ),
}


def compare_downstream(keys: Mapping[str, explore.RunKey], titles: Mapping[str, str]) -> None:
    """JSAE vs plain's section: both pairs' next-token KL when their output features keep
    only their top inputs, on one chart, with the areas and N× per pair and order."""
    st.subheader("Downstream: what the model loses with fewer connections")
    kls = {}
    for kind, key in keys.items():
        kl = cache.load_downstream(key)
        if kl is None:
            return
        kls[kind] = kl
    frame = explore.downstream_frame(kls, titles)
    st.altair_chart(charts.downstream_comparison(frame), width="stretch")
    st.dataframe(
        explore.downstream_table(kls, titles),
        column_config=KL_TABLE,
        hide_index=True,
        width="stretch",
    )
    st.caption(
        "Every active output feature of every token keeps only m of its inputs (the rest "
        "removed together, top k re-selected); the output SAE decodes the changed code with "
        "its error term added back, the result replaces the MLP output, and the rest of the "
        "model runs. Drawn: the mean KL divergence of the next-token distribution from the "
        "clean run against the connections each token keeps. A Jacobian that describes the "
        "computation keeps the KL low with fewer connections than random inputs."
    )
