"""JSAE vs plain: the same prompt through two pairs of one layer, A and B: any two kinds the
source has there (by default its comparison for the run's kind: a JSAE and a plain pair, or
the planted source's true and rotated pairs)."""

from __future__ import annotations

import streamlit as st

from app import cache, joint, results, state
from app.downloads import download_button, show_download_errors
from jsae import charts, explore
from jsae.analysis import CONFIDENCE


def missing_kind_note(ctx: state.Context, layer: int, kind: str) -> bool:
    """Say why there is nothing to compare; True when that is the case."""
    source = ctx.source
    layers_by_kind = {k: source.layers(k) for k in source.kinds}
    if sum(layer in layers for layers in layers_by_kind.values()) >= 2:
        return False  # two kinds to compare (the pickers choose which)
    compared = explore.compared_kinds(kind, source.pair_kinds)
    gap = explore.comparison_gap(layers_by_kind, layer, compared)
    if gap is None:
        return False
    st.info(gap.message, icon=":material/info:")
    if gap.switch_to is not None:
        st.button(
            f"Compare at layer {gap.switch_to}",
            key="cmp_switch_layer",
            on_click=results.request_layer,
            args=(gap.switch_to, compared[0]),
            icon=":material/swap_horiz:",
        )
    return True


def kind_pickers(ctx: state.Context, source) -> tuple[str, str] | None:
    """Pair A and pair B: any two kinds with a pair at the run's layer (default the
    source's comparison for the run's kind: JSAE vs plain); None when they are the same."""
    layer = ctx.run.layer
    available = [kind for kind in source.kinds if layer in source.layers(kind)]
    a, b, warnings = explore.chosen_kinds(
        available,
        ctx.run.kind,
        source.pair_kinds,
        st.session_state.get(state.CMP_A),
        st.session_state.get(state.CMP_B),
    )
    for warning in warnings:
        st.warning(warning, icon=":material/link_off:")
    st.session_state[state.CMP_A], st.session_state[state.CMP_B] = a, b
    left, right, _ = st.columns([1, 1, 2])
    for column, key, label in ((left, state.CMP_A, "Pair A"), (right, state.CMP_B, "Pair B")):
        column.selectbox(
            label,
            available,
            key=key,
            format_func=source.pair_kinds.label,
            persist_state="session",
            help="Any two kinds of pair this source has at the layer (A is drawn in the "
            "JSAE's colour).",
        )
    a, b = st.session_state[state.CMP_A], st.session_state[state.CMP_B]
    if a == b:
        st.info("Pick two different kinds of pair to compare.", icon=":material/info:")
        return None
    return a, b


def pair_metrics(pair: explore.PairStats) -> None:
    """The pair's split at ε, and the analysis' numbers that do not hinge on it."""
    a, b, c = results.metric_row(3)
    a.metric(
        "Fraction |J| > ε",
        f"{pair.important_share:.1%}",
        help="Share of the active Jacobian entries that are important at this ε "
        "(lower is sparser).",
    )
    b.metric(
        "Ratio",
        explore.format_number(pair.ratio, 3),
        help="Mean |diff| of important over unimportant connections.",
    )
    c.metric(
        "Unimp. |diff|",
        explore.format_number(pair.unimportant_mean_abs_diff),
        help="Mean |diff| of the unimportant connections (|J| ≤ ε).",
    )
    found = pair.statistics
    a, b, c = results.metric_row(3)
    results.interval_metric(
        a,
        "AUC",
        found.auc,
        found.auc_ci,
        describe=False,
        help=f"How well |J| ranks the connections that moved (|diff| > τ = {found.tau:g}) "
        "above those that did not: 0.5 is chance, 1 perfect. Does not depend on ε.",
    )
    results.interval_metric(
        b,
        "Ratio without exits",
        found.ratio_without_exits,
        found.ratio_without_exits_ci,
        describe=False,
        help="The ratio with the connections whose output feature left the top k left out: "
        "the movement a derivative could see.",
    )
    c.metric(
        "Exits' share",
        explore.format_share(found.exit_share_unimportant),
        help="Share of the unimportant connections' movement (Σ|diff|, |J| ≤ ε) from "
        "output features pushed out of the top k, which no derivative sees.",
    )


def eps_sweep(tables, eps: float, tau: float) -> None:
    """The ratio, the fraction important and the AUC of |J| > ε across ε, both pairs."""
    st.subheader("Across ε")
    frame = explore.sweep_view(tables, tau)
    for column, chart in zip(
        st.columns(len(explore.SWEEP_SHOWN)), charts.eps_sweep_charts(frame, eps), strict=True
    ):
        column.altair_chart(chart, width="stretch")
    st.caption(
        "Each pair split at every ε of a log grid (nothing is recomputed: ε only moves the "
        "split); dashed: the ε above. The ratio is drawn where both sides moved; the AUC of "
        f"|J| > ε is how well the split alone separates the connections that moved (|diff| > "
        f"τ = {tau:g}) from those that did not."
    )


def matched(tables, stats, titles: dict[str, str], eps: float) -> None:
    """Both pairs split at the JSAE's fraction of |J| > ε, each at its own ε."""
    st.subheader("At a matched fraction of important connections")
    table = explore.matched_comparison(tables, eps)
    table.insert(0, "pair", [titles[kind] for kind in table["kind"]])
    number = st.column_config.NumberColumn
    st.dataframe(
        table.drop(columns=["kind", "fraction"]),
        column_config={
            "pair": st.column_config.TextColumn("Pair"),
            "eps": number(
                "ε",
                format="%.4g",
                help="The pair's own ε: |J| > ε for its top fraction of connections.",
            ),
            "fraction_important": number("Fraction |J| > ε", format="percent"),
            "ratio": number("Ratio", format="%.4g"),
            "ratio_without_exits": number("Ratio without exits", format="%.4g"),
            "exit_share_unimportant": number("Exits' share of unimp. |diff|", format="percent"),
            "connections": number("Connections", format="%d"),
        },
        hide_index=True,
        width="stretch",
    )
    (first, reference), (second, other) = stats.items()
    fraction = float(table["fraction"].iloc[0])
    st.caption(
        f"One ε selects very different fractions in different pairs (at ε = {eps:g}: "
        f"{reference.important_share:.1%} of the {titles[first]}' connections, "
        f"{other.important_share:.1%} of the {titles[second]}'), so a ratio at one ε partly "
        "compares how sparse the two Jacobians are. Here each pair is split at its own ε, the "
        f"one that makes its top {fraction:.1%} of connections by |J| important: the "
        f"{titles[first]}' share at ε = {eps:g}."
    )


def capture(stats) -> None:
    """Both pairs' mass-capture curves, overlaid."""
    st.subheader("How much of the movement do the largest |J| carry?")
    curves = {kind: pair.statistics.capture_curve for kind, pair in stats.items()}
    frame = explore.capture_frame(curves)
    if frame.empty:
        st.info("No connection moved in either pair.", icon=":material/info:")
        return
    top = next(iter(stats.values())).statistics.capture_fraction
    st.altair_chart(charts.capture_curves(frame, at=top), width="stretch")
    shares = ", ".join(
        f"{kind} {pair.statistics.capture:.0%} (at most {pair.statistics.capture_oracle:.0%})"
        for kind, pair in stats.items()
    )
    st.caption(
        f"Share of each pair's Σ|diff| on its top fraction of connections by |J| (solid) and "
        f"by |diff| itself (dashed, the most any ranking can); dotted: a random ranking. The "
        f"top {top:.0%} by |J| carry: {shares}."
    )


def main() -> None:
    ctx = state.context()
    if ctx.run is None:
        if not missing_kind_note(ctx, ctx.current.layer, ctx.current.kind):
            st.info(
                "Press **Run** to ablate the prompt through both pairs.",
                icon=":material/play_arrow:",
            )
        return
    if ctx.stale_but_kind:  # the kinds compared are this page's own choice
        st.info(
            "The settings changed since the last Run; the results below are still for the "
            "old ones. Press **Run** to update them.",
            icon=":material/update:",
        )
    if missing_kind_note(ctx, ctx.run.layer, ctx.run.kind):
        return
    if ctx.eps is None:
        st.error(ctx.eps_error or "ε is unusable.", icon=":material/error:")
        return
    eps = ctx.eps
    # the reference kind first (its colour is the JSAE's on every chart); the titles name
    # the pairs as the source labels them (the paper's labels for its kinds)
    source = cache.get_source(ctx.run.source, ctx.run.model)
    compared = kind_pickers(ctx, source)
    if compared is None:
        return
    titles = {kind: source.pair_kinds.label(kind) for kind in compared}
    tables, runs = {}, {}
    for kind in compared:
        data = cache.load_run(results.with_kind(ctx.run, kind))
        if data is None:
            return
        runs[kind] = data
        if data.notice and kind == compared[0]:
            st.warning(data.notice, icon=":material/content_cut:")
        tables[kind] = data.split(eps)
    if any(t.empty for t in tables.values()):
        st.warning("The prompt has no token to ablate besides BOS; type a longer prompt.")
        return
    results.run_caption(
        ctx.run, f" · ε = {eps:g}", pairs=" vs ".join(titles[kind] for kind in compared)
    )

    analyses = {}
    for kind in compared:
        analysis = cache.load_analysis(results.with_kind(ctx.run, kind), eps, ctx.tau)
        if analysis is None:
            return
        analyses[kind] = analysis
    stats = {
        kind: explore.pair_stats(table, eps, analyses[kind], ctx.tolerance)
        for kind, table in tables.items()
    }
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    results.tau_input(left)
    right.caption(
        f"Grey chips under a number: its {CONFIDENCE:.0%} interval (percentile bootstrap over "
        "tokens). τ sets which connections count as moved for the AUC and the verdicts."
    )
    cols = st.columns(2)
    for col, (kind, pair) in zip(cols, stats.items(), strict=True):
        with col:
            st.subheader(titles[kind])
            pair_metrics(pair)
            results.verdict_box(pair.verdict)

    st.subheader("How large are the Jacobian entries?")
    state.display_choices("cmp_log")
    log_count = st.toggle("Log scale", key="cmp_log", persist_state="session")
    bins = explore.jacobian_bins(tables, eps, bins=60)
    st.altair_chart(
        charts.jacobian_histogram(bins, eps, log_count=bool(log_count)), width="stretch"
    )
    st.caption(
        "Share of each pair's active Jacobian entries per bin of log₁₀|J|; dashed: ε. A "
        "JSAE (or the planted true pair) should put far more of its mass to the left of ε."
    )

    eps_sweep(tables, eps, ctx.tau)
    matched(tables, stats, titles, eps)
    capture(stats)
    joint.compare_curves(analyses, titles)
    joint.compare_downstream({k: results.with_kind(ctx.run, k) for k in compared}, titles)

    st.subheader("Ablation summaries")
    for kind, pair in stats.items():  # one under the other: each table needs the full width
        st.markdown(f"**{titles[kind]}**")
        results.summary_table(pair.summary, ctx.tolerance)
    downloads(runs, tables, titles, eps)


def downloads(runs, tables, titles: dict[str, str], eps: float) -> None:
    """Each pair's connections at ε (the table behind its charts), as CSV."""
    show_download_errors()
    cols = st.columns(len(tables))
    for col, (kind, table) in zip(cols, tables.items(), strict=True):
        data = runs[kind]
        name = explore.download_name(data.key, "csv")
        label = f"Download {titles[kind]} (CSV)"
        download_button(col, table, "csv", label, name, data.provenance(eps))
    st.caption(
        f"Every connection of each pair ({', '.join(f'{len(t):,}' for t in tables.values())} "
        f"rows): {', '.join(next(iter(tables.values())).columns)}; `important` is |J| > "
        f"ε = {eps:g}. The Jacobian histogram, the ε sweep and the summaries above are computed "
        "from these."
    )


main()
