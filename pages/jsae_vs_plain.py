"""JSAE vs plain: the same prompt through both pairs of one layer."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from jsae import charts, explore
from jsae.stats import SUMMARY_LABELS, importance_ratio, jacobian_sparsity, summarize
from pages.shared import ui

KIND_TITLES = {"jsae": "JSAE pair", "plain": "Plain pair"}


def missing_kind_note(ctx: ui.Context, layer: int) -> bool:
    """Say why there is nothing to compare; True when that is the case."""
    source = ctx.source
    if len(source.kinds) < 2:
        only = source.kinds[0] if source.kinds else "no"
        st.info(
            f"This source has only {only} pairs, so there is nothing to compare. Load a "
            "source with both a JSAE and a plain pair for the same layer (the bundled "
            "default has both for every layer).",
            icon=":material/info:",
        )
        return True
    kinds = explore.kinds_at({k: source.layers(k) for k in source.kinds}, layer)
    if len(kinds) < 2:
        both = sorted(set(source.layers("jsae")) & set(source.layers("plain")))
        hint = (
            f"Layers with both: {', '.join(map(str, both))}."
            if both
            else "No layer of this source has both."
        )
        st.info(f"Layer {layer} has only a {kinds[0]} pair. {hint}", icon=":material/info:")
        if both:
            st.button(
                f"Compare at layer {both[0]}",
                key="cmp_switch_layer",
                on_click=ui.request_layer,
                args=(both[0], "jsae"),
                icon=":material/swap_horiz:",
            )
        return True
    return False


def main() -> None:
    ctx = ui.context()
    if ctx is None:
        return
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
    for kind in ("jsae", "plain"):
        data = ui.load_run(ui.with_kind(ctx.run, kind))
        if data is None:
            return
        if data.notice and kind == "jsae":
            st.warning(data.notice, icon=":material/content_cut:")
        tables[kind] = data.split(eps)
    if any(t.empty for t in tables.values()):
        st.warning("The prompt has no token to ablate besides BOS; type a longer prompt.")
        return
    ui.run_caption(ui.with_kind(ctx.run, "jsae"), f" · both pairs · ε = {eps:g}")

    summaries = {kind: summarize(table) for kind, table in tables.items()}
    cols = st.columns(2)
    for col, (kind, table) in zip(cols, tables.items(), strict=True):
        with col:
            st.subheader(KIND_TITLES[kind])
            a, b, c = st.columns(3)
            a.metric(
                "Fraction |J| > ε",
                f"{jacobian_sparsity(table['jacobian'].to_numpy(), eps):.1%}",
                help="Share of the active Jacobian entries that are important at this ε "
                "(lower is sparser).",
            )
            b.metric(
                "Ratio",
                explore.format_number(importance_ratio(summaries[kind]), 3),
                help="Mean |diff| of important over unimportant connections.",
            )
            c.metric(
                "Unimp. |diff|",
                explore.format_number(summaries[kind].loc["unimportant", "mean_abs_diff"]),
                help="Mean |diff| of the unimportant connections (|J| ≤ ε).",
            )
            st.caption(explore.verdict(summaries[kind], eps).sentence)

    st.subheader("How large are the Jacobian entries?")
    log_count = st.toggle("Log scale", value=False, key="cmp_log", persist_state="session")
    groups = {
        kind: explore.log_abs_jacobian(t["jacobian"].to_numpy()) for kind, t in tables.items()
    }
    lo, hi = explore.data_range(*groups.values(), np.array([math.log10(eps)]))
    bins = explore.histogram_bins(groups, bins=60, value_range=(lo, hi), group_name="kind")
    st.altair_chart(
        charts.jacobian_histogram(bins, eps, log_count=bool(log_count)), width="stretch"
    )
    st.caption(
        "Share of each pair's active Jacobian entries per bin of log₁₀|J|; dashed: ε. A "
        "JSAE should put far more of its mass to the left of ε."
    )

    st.subheader("Ablation summaries side by side")
    cols = st.columns(2)
    for col, (kind, summary) in zip(cols, summaries.items(), strict=True):
        with col:
            st.markdown(f"**{KIND_TITLES[kind]}**")
            shown = summary.rename(columns=SUMMARY_LABELS)
            st.dataframe(
                shown,
                width="stretch",
                column_config={
                    label: st.column_config.NumberColumn(
                        label,
                        format="%d"
                        if label == SUMMARY_LABELS["connections"]
                        else "percent"
                        if label == SUMMARY_LABELS["within_tolerance"]
                        else "%.4g",
                    )
                    for label in shown.columns
                },
            )


ui.run_page(main)
