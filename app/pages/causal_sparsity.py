"""Causal sparsity: do the connections the Jacobian calls unimportant really not move?"""

from __future__ import annotations

import math

import streamlit as st

from app import cache, guard, joint, results, state
from app.clicks import selection_of
from app.downloads import download_button, show_download_errors
from app.settings import hosted
from jsae import charts, explore, wandb_log
from jsae.analysis import Analysis
from jsae.stats import importance_ratio, summarize

HIST_Y = {"count": "Count", "share": "Share of experiment"}
VERDICT_WIDTH = 2 * results.METRIC_WIDTH + results.METRIC_GAP_PX
"""Pixels of the verdict's column: two metrics side by side (the chart takes the rest, or
goes below it on a narrow screen)."""


def metrics(summary, ratio: float, ratio_ci: tuple[float, float]) -> None:
    """The numbers the verdict rests on, two by two beside the histogram: both groups'
    mean |diff|, their ratio, the share unimportant and both counts (the signed means are
    in the summary table below)."""
    total = int(summary.loc["all", "connections"])
    groups = (("important", "Important", "|J| > ε"), ("unimportant", "Unimportant", "|J| ≤ ε"))
    cols = results.metric_row(6)
    for col, (experiment, label, rule) in zip(cols[:2], groups, strict=True):
        col.metric(
            f"{label} mean |diff|",
            explore.format_number(summary.loc[experiment, "mean_abs_diff"]),
            help=f"Mean |out_act after − before| over the connections with {rule}.",
        )
    results.interval_metric(
        cols[2],
        "Ratio of the two",
        ratio,
        ratio_ci,
        help="Mean |diff| of important connections over that of unimportant ones "
        "(the interval resamples tokens).",
    )
    unimportant = int(summary.loc["unimportant", "connections"])
    cols[3].metric(
        "Share unimportant",
        f"{unimportant / max(total, 1):.1%}",
        help="How sparse the Jacobian is at this ε: the share of connections with |J| ≤ ε.",
    )
    for col, (experiment, label, rule) in zip(cols[4:], groups, strict=True):
        n = int(summary.loc[experiment, "connections"])
        col.metric(
            f"{label} connections",
            f"{n:,}",
            help=f"Connections with {rule}: {n / max(total, 1):.1%} of {total:,}.",
        )


def histogram(table) -> explore.PickedBin | None:
    """The diff histogram over its view controls (which wrap when the column is narrow);
    the bar clicked, if any."""
    chart_slot = st.container()  # above its controls: the chart first, high on the page
    controls = st.container(horizontal=True, wrap=True, gap="small", vertical_alignment="bottom")
    layout = controls.segmented_control(
        "View",
        state.display_choices("hist_layout"),
        format_func=results.HIST_LAYOUTS.get,
        key="hist_layout",
        persist_state="session",
    )
    y = controls.segmented_control(
        "Height",
        state.display_choices("hist_y"),
        format_func=HIST_Y.get,
        key="hist_y",
        persist_state="session",
    )
    state.display_choices("hist_log")
    log_count = controls.toggle(
        "Log", key="hist_log", persist_state="session", help="Count on a log scale."
    )
    bins = controls.select_slider(
        "Bins",
        state.display_choices("hist_bins"),
        key="hist_bins",
        persist_state="session",
        width=150,
    )
    binned = explore.diff_bins(table, bins=int(bins))
    options = {"log_count": bool(log_count), "y": y or "count"}
    if layout == "facet":
        shown = charts.diff_histogram_panels(binned, **options)
        keys = [f"hist_pick_{name}" for name in charts.EXPERIMENT_ORDER]
    else:
        shown, keys = [charts.diff_histogram(binned, **options)], ["hist_pick"]
    events = [
        chart_slot.altair_chart(chart, width="stretch", on_select="rerun", key=key)
        for chart, key in zip(shown, keys, strict=True)
    ]
    lo, hi = binned.attrs["range"]
    st.caption(
        f"{len(table):,} connections binned in numpy into {bins} bins on the data's range "
        f"[{lo:.3g}, {hi:.3g}]; empty bins are not drawn. The shaded band: diffs of "
        f"connections whose {charts.EXIT_BAND_LABEL} (diff = −out_act). Click a bar to list "
        "its connections."
    )
    picked = None
    for event in events:
        picked = picked or explore.picked_bin(
            selection_of(event).get(charts.BIN_SELECTION), (lo, hi)
        )
    return picked


def bin_table(table, picked: explore.PickedBin) -> None:
    """The connections of the histogram bar clicked (largest |diff| first)."""
    rows, total = explore.bin_connections(table, picked)
    results.connection_table(rows, total, "hist_rows", explore.bin_text(picked))


def decomposition(table) -> None:
    """Where each experiment's movement comes from: exits, the linear part, curvature."""
    parts = guard.guarded("splitting diff into its parts", explore.decomposition, table)
    rates = guard.guarded("counting exits", explore.exit_rates, table)
    if parts is None or rates is None:
        return
    if parts["share"].notna().any():
        st.altair_chart(charts.decomposition_bars(parts), width="stretch")
    else:
        st.info("No connection moved: there is nothing to split.", icon=":material/info:")
    cols = iter(results.metric_row(4))
    for experiment, row in rates.iterrows():
        label = experiment.capitalize()
        next(cols).metric(
            f"{label} P(exit)",
            explore.format_share(row["p_exit"]),
            help=f"{int(row['exits']):,} of {int(row['connections']):,} connections: the "
            "output feature left the top k.",
        )
        next(cols).metric(
            f"{label} |diff| from exits",
            explore.format_share(row["exit_mass_share"]),
            help="Σ|diff| of the connections that exited over the group's Σ|diff|.",
        )
    st.caption(
        "Every diff splits exactly into diff = linear (−s·J) + curvature (the rest of the "
        "un-gated pre-activation change) + gate (what top-k re-selection and the ReLU did; "
        "nearly −out_act when the output feature exits). Each bar is one group's "
        "Σ|linear|, Σ|curvature| and Σ|gate|, normalised to add up to 1: the share of the "
        "movement's magnitude each part carries, summed before parts of one connection can "
        "cancel (the tooltip also gives the signed share Σ sign(diff)·part / Σ|diff|, which "
        "adds up to exactly 1 but goes negative for a part that works against the move)."
    )


def health_warnings(analysis: Analysis) -> None:
    """The pair's health problems on these tokens (a flat output code, tiny margins…)."""
    for warning in analysis.health.warnings if analysis.health is not None else ():
        st.warning(warning, icon=":material/health_and_safety:")


def true_edges_panel(analysis: Analysis) -> None:
    """Precision and recall of the important and the moved connections against the true
    edges (``jsae.analysis.ground_truth``), when the source knows its MLP's computation."""
    found = analysis.edges
    if found is None:
        return
    st.markdown("**Against the true edges**")
    number = st.column_config.NumberColumn
    st.dataframe(
        found.table,
        column_config={
            "rule": st.column_config.TextColumn("Connections"),
            "flagged": number("Flagged", format="%d"),
            "true_edges": number("On a true edge", format="%d"),
            "hits": number("Flagged and on one", format="%d"),
            "precision": number("Precision", format="%.4f"),
            "recall": number("Recall", format="%.4f"),
        },
        hide_index=True,
        width="stretch",
    )
    off = found.off_edge_sentence()
    st.caption(
        f"This source knows which input feature feeds which output feature. important: |J| > "
        f"ε = {found.eps:g}; moved: |diff| > τ = {found.tau:g}; counted over connections "
        "(an edge active on ten tokens counts ten times)." + (f" {off}" if off else "")
    )


def statistics_panel(analysis: Analysis | None, kind: str) -> None:
    """The ε-free statistics of the run (with token-bootstrap intervals) and the pair's
    health, as ``jsae.analysis.analyse`` gives them, τ to set them by, and the
    mass-capture curve (of the ``kind`` pair)."""
    st.subheader("Does |J| say what moves?")
    left, _ = st.columns([1, 3])
    results.tau_input(left)
    if analysis is None:
        return
    stats = analysis.statistics
    labels = {
        "statistic": "Statistic",
        "shown": "Value",
        "interval": f"{stats.confidence:.0%} interval",
        "description": "What it says",
    }

    def table(summary) -> None:
        shown = explore.statistics_table(summary)[list(labels)].rename(columns=labels)
        st.table(shown, border="horizontal", hide_index=True)

    table(stats.summary())
    st.caption(
        f"Intervals: percentile bootstrap over the {stats.n_tokens:,} tokens "
        f"({stats.n_bootstrap} resamples)."
    )
    true_edges_panel(analysis)
    if analysis.health is not None:
        with st.expander("The pair's health on these tokens"):
            table(analysis.health.summary())
    frame = explore.capture_frame({kind: stats.capture_curve})
    if frame.empty:
        st.info("No connection moved: there is no movement to capture.", icon=":material/info:")
        return
    st.markdown("**How much of the movement do the connections with the largest |J| carry?**")
    st.altair_chart(charts.capture_curves(frame, at=stats.capture_fraction), width="stretch")
    st.caption(
        f"How much of the movement (Σ|diff|) the connections with the largest |J| carry: "
        f"the top {stats.capture_fraction:.0%} by |J| carry {stats.capture:.0%} "
        f"(solid); ranked by |diff| itself, the top {stats.capture_fraction:.0%} carry "
        f"{stats.capture_oracle:.0%}, the most any ranking can (dashed). The dotted diagonal "
        "is a random ranking. A Jacobian that says what moves hugs the dashed line."
    )


def downloads(table, key: explore.RunKey, eps: float, provenance=None) -> None:
    show_download_errors()

    def button(column, fmt: str, label: str) -> None:
        name = explore.download_name(key, fmt)
        download_button(column, table, fmt, f"Download {label}", name, provenance)

    c1, c2, _ = st.columns([1, 1, 3])
    button(c1, "csv", "CSV")
    if explore.parquet_available():
        button(c2, "parquet", "Parquet")
    else:
        st.error(
            "Parquet download is unavailable: pyarrow is not installed. Install it with "
            "`pip install pyarrow`, or download the CSV.",
            icon=":material/error:",
        )
    st.caption(
        f"Every connection ({len(table):,} rows): {', '.join(table.columns)}; "
        f"`important` is |J| > ε = {eps:g}."
    )


def reproduce(key: explore.RunKey, ctx) -> None:
    """The Python snippet and the ``jsae ablate`` line that recompute this view's numbers."""
    how = explore.Reproduction(
        key, ctx.eps, ctx.tau, ctx.tolerance, max_tokens=hosted().prompt_token_limit
    )
    with st.expander("Reproduce this view", icon=":material/terminal:"):
        st.code(how.python(), language="python")
        st.code(how.cli(), language="bash")
        st.caption(
            "The same calls the page makes: `summary` holds the mean |diff| of the connections "
            "with |J| > ε and |J| ≤ ε, `analysis.statistics.ratio` their ratio, "
            "`analysis.verdict` the verdict; the command prints them."
        )


def log_to_wandb(data: explore.RunData, eps: float, analysis: Analysis | None) -> None:
    """Log this run (configuration, summary, the analysis shown above, histogram table,
    connections artifact) to W&B.

    Hosted, the button shows only when the configuration enables W&B, and each log is
    rate-limited and takes an experiment slot (``app.cache.log_run_to_wandb``)."""
    if not cache.wandb_offered():
        return
    if not st.button("Log to W&B", key="wandb_log", icon=":material/cloud_upload:"):
        return
    key = data.key
    with st.spinner("Logging to W&B…"):
        run = guard.guarded(
            "logging to W&B",
            cache.log_run_to_wandb,
            wandb_log.log_to_wandb,
            data.result(eps),
            source_name=key.source,
            analysis=analysis,
        )
    if run is not None:
        st.success(run.describe(), icon=":material/cloud_done:")


def main() -> None:
    inputs = results.page_run()
    if inputs is None:
        return
    ctx, data, table = inputs
    summary = summarize(table, ctx.tolerance)
    results.run_caption(data.key, f" · {len(data.positions):,} tokens ablated")
    # The histogram goes out first and the verdict fills its slot after: the verdict weighs
    # the joint ablation and the bootstrap (about a second on a 200-token prompt), which
    # should not hold back the chart. Left the verdict and its numbers, right the chart.
    row = st.container(horizontal=True, wrap=True, gap="medium")
    left, right = row.container(width=VERDICT_WIDTH), row.container(width="stretch")
    verdict_slot, numbers_slot = left.container(), left.container()
    with right:
        st.markdown("**How much did each connection move?**")
        picked = histogram(table)
    with verdict_slot:
        analysis = cache.load_analysis(data.key, ctx.eps, ctx.tau)
        if analysis is not None:
            truth = analysis.edges.sentences() if analysis.edges is not None else ()
            results.verdict_box(analysis.verdict, truth=truth)
            health_warnings(analysis)
    with numbers_slot:
        if analysis is not None:
            metrics(summary, analysis.statistics.ratio, analysis.statistics.ratio_ci)
        else:
            metrics(summary, importance_ratio(summary), (math.nan, math.nan))
    if picked is not None:
        bin_table(table, picked)
    st.caption(explore.research_note(data.key, ctx.eps, data.key.pairs))
    reproduce(data.key, ctx)
    st.subheader("Where does the movement come from?")
    decomposition(table)
    joint.removed_together(data.key, ctx.eps, analysis)
    st.subheader("Summary")
    results.summary_table(summary, ctx.tolerance)
    statistics_panel(analysis, data.key.kind)
    downloads(table, data.key, ctx.eps, data.provenance(ctx.eps))
    log_to_wandb(data, ctx.eps, analysis)


main()
