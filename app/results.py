"""What the results pages share: the last run with its notices, the table split at ε,
the run's caption, the summary table, the verdict box, a number with its interval, the τ
setting, a histogram's views, and the moves to another page or layer."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from app.cache import load_run
from app.clicks import fresh_row
from app.guard import guarded
from app.registry import PAGES, TOKEN_PAGE
from app.state import AUTORUN, PAIR_REQUEST, SELECTION, TAU, Context, context
from app.url import run_view
from jsae import explore
from jsae.analysis import CONFIDENCE, Verdict
from jsae.stats import SUMMARY_LABELS, Tolerance


def require_run(ctx: Context) -> explore.RunData | None:
    """The last Run's data (computing it if needed), with the stale / truncation notices;
    None (after saying what to do) when there is nothing to show."""
    if ctx.run is None:
        st.info(
            "Press **Run** to ablate every connection of the prompt.", icon=":material/play_arrow:"
        )
        return None
    if ctx.stale:
        st.info(
            "The settings changed since the last Run; the results below are still for the "
            "old ones. Press **Run** to update them.",
            icon=":material/update:",
        )
    data = load_run(ctx.run)
    if data is None:
        return None
    if data.notice:
        st.warning(data.notice, icon=":material/content_cut:")
    if data.table.empty:
        st.warning(
            "The prompt has no token to ablate besides the BOS token; type a longer prompt.",
            icon=":material/warning:",
        )
        return None
    return data


def page_run() -> tuple[Context, explore.RunData, pd.DataFrame] | None:
    """What a results page draws from: the frame's context, the last run and its table
    split at ε; or None, after saying why there is nothing to draw."""
    ctx = context()
    data = require_run(ctx)
    if data is None:
        return None
    table = split_table(ctx, data)
    if table is None:
        return None
    return ctx, data, table


def split_table(ctx: Context, data: explore.RunData) -> pd.DataFrame | None:
    """The run's table split at ε, or None after showing why ε is unusable."""
    if ctx.eps is None:
        st.error(ctx.eps_error or "ε is unusable.", icon=":material/error:")
        return None
    return guarded("splitting at ε", data.split, ctx.eps)


HIST_LAYOUTS = {"overlay": "Overlaid", "facet": "Faceted"}
"""A histogram's views: its groups in one chart, or one panel each."""
VERDICT_BOXES = {"success": st.success, "info": st.info, "warning": st.warning}
"""``explore.VERDICT_STYLES``'s boxes."""


def verdict_box(found: Verdict, *, why: bool = True, truth: tuple[str, ...] = ()) -> None:
    """The verdict in its box (``explore.verdict_box``), and an expander "Why?" listing the
    reasons it rests on, then ``truth``: what the known true edges say (``EdgeRecovery.
    sentences``), when the source knows them, then the verdict's thresholds (under the box
    when ``why`` is off)."""
    style, text = explore.verdict_box(found)
    VERDICT_BOXES[style](text, icon=":material/lightbulb:")
    if not why:
        st.caption(explore.verdict_rule())
        return
    with st.expander("Why?"):
        if found.reasons or truth:
            st.markdown("\n".join(f"- {reason}" for reason in (*found.reasons, *truth)))
        st.caption(explore.verdict_rule())


METRIC_WIDTH = 190
"""Pixels per metric in a ``metric_row``: room for a 7-character value at the theme's size."""
METRIC_GAP, METRIC_GAP_PX = "medium", 32
"""The gap between a ``metric_row``'s metrics: Streamlit's "medium", 2rem."""


def metric_row(n: int) -> list:
    """``n`` boxes for metrics, side by side while they fit and wrapped onto the next line
    when they do not (``st.columns`` would squeeze them until their values are cut off)."""
    row = st.container(horizontal=True, wrap=True, gap=METRIC_GAP)
    return [row.container(width=METRIC_WIDTH) for _ in range(n)]


def interval_metric(
    column,
    label: str,
    value: float,
    interval: tuple[float, float],
    *,
    help: str,
    digits: int = 3,
    describe: bool = True,
) -> None:
    """A metric with its bootstrap interval ("lo–hi") under it, when there is one, named as
    such when ``describe`` (narrow columns leave the name to a caption)."""
    shown = explore.format_interval(*interval)
    column.metric(
        label,
        explore.format_number(value, digits),
        delta=shown or None,
        delta_color="off",
        delta_arrow="off",
        delta_description=f"{CONFIDENCE:.0%} interval" if shown and describe else None,
        help=help,
    )


def tau_input(column=None) -> float:
    """The statistics' τ (kept for the session and in the URL): a connection moved when
    |diff| > τ."""
    return float(
        (column or st).number_input(
            "τ: moved when |diff| > τ",
            key=TAU,
            min_value=0.0,
            step=0.01,
            format="%g",
            persist_state="session",
            help="The threshold of the statistics and the verdict: a connection moved when "
            "|diff| > τ (in output-feature activation units). The AUC asks how well |J| "
            "ranks the connections that moved above those that did not.",
        )
    )


def run_caption(key: explore.RunKey, extra: str = "", pairs: str | None = None) -> None:
    """The run's layer, pair (``pairs`` names the pairs compared instead), mode and
    ``extra``."""
    mode = key.mode if key.mode != "scale" else f"scale s = {key.scale:g}"
    pair = pairs if pairs is not None else f"{key.kind} pair"
    st.caption(f"Layer {key.layer} · {pair} · mode {mode}{extra}")


def open_token_explorer(position: int, in_feature: int, out_feature: int) -> None:
    """Select a connection and switch to the token explorer in one navigation: the
    selection goes into the session and the token view's query parameters go with the
    switch, so the frame there finds the URL already right and the browser's history gets
    one entry (Back returns here)."""
    picked = {
        "position": int(position),
        "in_feature": int(in_feature),
        "out_feature": int(out_feature),
    }
    st.session_state[SELECTION] = {**picked, "pending": True}
    view = replace(run_view(context()), **picked)
    st.switch_page(PAGES[TOKEN_PAGE].script, query_params=explore.to_query_params(view))


def connection_table(rows: pd.DataFrame, total: int, key: str, what: str) -> None:
    """The connections behind a chart selection (``rows``, of ``total``), described as
    ``what``; a click on a row opens that connection in the token explorer."""
    shown = f"the {len(rows):,} with the largest |diff|" if len(rows) < total else "all"
    st.caption(
        f"{total:,} connections {what}; showing {shown}. Click a row to open that "
        "connection in the token explorer."
    )
    event = st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(rows), 320),
        on_select="rerun",
        selection_mode="single-row",
        key=key,
    )
    picked = fresh_row(event, f"_{key}_seen")
    if picked is not None and 0 <= picked < len(rows):
        row = rows.iloc[picked]
        open_token_explorer(row["position"], row["in_feature"], row["out_feature"])


def request_layer(layer: int, kind: str) -> None:
    """Button callback: switch the sidebar to ``layer`` / ``kind`` and run there."""
    st.session_state[PAIR_REQUEST] = (layer, kind, False)
    st.session_state[AUTORUN] = True


def with_kind(key: explore.RunKey, kind: str) -> explore.RunKey:
    return replace(key, kind=kind)


def summary_table(summary: pd.DataFrame, tolerance: Tolerance) -> None:
    """A ``stats.summarize`` table (its "within tolerance" at ``tolerance``) with readable
    column labels and number formats, and the tolerance's rule under it."""
    shown = summary.rename(columns=SUMMARY_LABELS)
    formats = {label: "%.4g" for label in shown.columns}
    formats[SUMMARY_LABELS["connections"]] = "%d"
    formats[SUMMARY_LABELS["within_tolerance"]] = "percent"
    st.dataframe(
        shown,
        column_config={
            label: st.column_config.NumberColumn(label, format=fmt)
            for label, fmt in formats.items()
        },
        width="stretch",
    )
    st.caption(explore.tolerance_rule(tolerance))
