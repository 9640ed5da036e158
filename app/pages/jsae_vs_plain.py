"""JSAE vs plain: the same prompt through both pairs of one layer."""

from __future__ import annotations

import streamlit as st

from app import cache, results, state
from jsae import charts, explore

KIND_TITLES = {"jsae": "JSAE pair", "plain": "Plain pair"}


def missing_kind_note(ctx: state.Context, layer: int) -> bool:
    """Say why there is nothing to compare; True when that is the case."""
    source = ctx.source
    gap = explore.comparison_gap({k: source.layers(k) for k in source.kinds}, layer)
    if gap is None:
        return False
    st.info(gap.message, icon=":material/info:")
    if gap.switch_to is not None:
        st.button(
            f"Compare at layer {gap.switch_to}",
            key="cmp_switch_layer",
            on_click=results.request_layer,
            args=(gap.switch_to, "jsae"),
            icon=":material/swap_horiz:",
        )
    return True


def main() -> None:
    ctx = state.context()
    if ctx.run is None:
        if not missing_kind_note(ctx, ctx.current.layer):
            st.info(
                "Press **Run** to ablate the prompt through both pairs.",
                icon=":material/play_arrow:",
            )
        return
    if ctx.stale:
        st.info(
            "The settings changed since the last Run; the results below are still for the "
            "old ones. Press **Run** to update them.",
            icon=":material/update:",
        )
    if missing_kind_note(ctx, ctx.run.layer):
        return
    if ctx.eps is None:
        st.error(ctx.eps_error or "ε is unusable.", icon=":material/error:")
        return
    eps = ctx.eps
    tables = {}
    for kind in explore.COMPARED:
        data = cache.load_run(results.with_kind(ctx.run, kind))
        if data is None:
            return
        if data.notice and kind == "jsae":
            st.warning(data.notice, icon=":material/content_cut:")
        tables[kind] = data.split(eps)
    if any(t.empty for t in tables.values()):
        st.warning("The prompt has no token to ablate besides BOS; type a longer prompt.")
        return
    results.run_caption(results.with_kind(ctx.run, "jsae"), f" · both pairs · ε = {eps:g}")

    stats = {kind: explore.pair_stats(table, eps) for kind, table in tables.items()}
    cols = st.columns(2)
    for col, (kind, pair) in zip(cols, stats.items(), strict=True):
        with col:
            st.subheader(KIND_TITLES[kind])
            a, b, c = st.columns(3)
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
            st.caption(pair.verdict.sentence)

    st.subheader("How large are the Jacobian entries?")
    log_count = st.toggle("Log scale", value=False, key="cmp_log", persist_state="session")
    bins = explore.jacobian_bins(tables, eps, bins=60)
    st.altair_chart(
        charts.jacobian_histogram(bins, eps, log_count=bool(log_count)), width="stretch"
    )
    st.caption(
        "Share of each pair's active Jacobian entries per bin of log₁₀|J|; dashed: ε. A "
        "JSAE should put far more of its mass to the left of ε."
    )

    st.subheader("Ablation summaries side by side")
    cols = st.columns(2)
    for col, (kind, pair) in zip(cols, stats.items(), strict=True):
        with col:
            st.markdown(f"**{KIND_TITLES[kind]}**")
            results.summary_table(pair.summary)


main()
