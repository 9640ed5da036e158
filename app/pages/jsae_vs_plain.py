"""JSAE vs plain: the same prompt through both pairs of one layer."""

from __future__ import annotations

import streamlit as st

from app import cache, results, state
from jsae import charts, explore
from jsae.pair import KIND_LABELS


def missing_kind_note(ctx: state.Context, layer: int, kind: str) -> bool:
    """Say why there is nothing to compare; True when that is the case."""
    source = ctx.source
    layers_by_kind = {k: source.layers(k) for k in source.kinds}
    gap = explore.comparison_gap(layers_by_kind, layer, explore.compared_kinds(kind))
    if gap is None:
        return False
    st.info(gap.message, icon=":material/info:")
    if gap.switch_to is not None:
        st.button(
            f"Compare at layer {gap.switch_to}",
            key="cmp_switch_layer",
            on_click=results.request_layer,
            args=(gap.switch_to, explore.compared_kinds(kind)[0]),
            icon=":material/swap_horiz:",
        )
    return True


def main() -> None:
    ctx = state.context()
    if ctx.run is None:
        if not missing_kind_note(ctx, ctx.current.layer, ctx.current.kind):
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
    if missing_kind_note(ctx, ctx.run.layer, ctx.run.kind):
        return
    if ctx.eps is None:
        st.error(ctx.eps_error or "ε is unusable.", icon=":material/error:")
        return
    eps = ctx.eps
    # keyed by the base kind (jsae, plain), so that the charts' colours stay the same for
    # the randomized-LLM controls; the titles name the pairs as the paper does
    compared = dict(zip(explore.COMPARED, explore.compared_kinds(ctx.run.kind), strict=True))
    titles = {base: KIND_LABELS[kind] for base, kind in compared.items()}
    tables = {}
    for base, kind in compared.items():
        data = cache.load_run(results.with_kind(ctx.run, kind))
        if data is None:
            return
        if data.notice and base == explore.COMPARED[0]:
            st.warning(data.notice, icon=":material/content_cut:")
        tables[base] = data.split(eps)
    if any(t.empty for t in tables.values()):
        st.warning("The prompt has no token to ablate besides BOS; type a longer prompt.")
        return
    first = compared[explore.COMPARED[0]]
    results.run_caption(results.with_kind(ctx.run, first), f" · both pairs · ε = {eps:g}")

    stats = {kind: explore.pair_stats(table, eps) for kind, table in tables.items()}
    cols = st.columns(2)
    for col, (kind, pair) in zip(cols, stats.items(), strict=True):
        with col:
            st.subheader(titles[kind])
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
            st.markdown(f"**{titles[kind]}**")
            results.summary_table(pair.summary)


main()
