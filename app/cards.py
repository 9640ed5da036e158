"""Feature cards in the app: a pair's cards found beside its source (cached once per
process), one feature's card drawn, and the one command that builds them when there are
none. The cards are ``jsae.features``'; this module only lays them out."""

from __future__ import annotations

import streamlit as st

from app.cache import get_source
from app.guard import guarded
from jsae import charts, explore
from jsae.analysis.graph import Labeler
from jsae.features import FeatureCards, build_command, default_cards_root


@st.cache_resource(show_spinner=False, max_entries=32)
def get_cards(source: str, layer: int, kind: str) -> FeatureCards | None:
    """The pair's cards in the source's ``cards/`` folder, or None when none were built."""
    return FeatureCards.find(default_cards_root(source), layer, kind)


def load_cards(key: explore.RunKey) -> FeatureCards | None:
    return guarded("reading the feature cards", get_cards, key.source, key.layer, key.kind)


def labeler(key: explore.RunKey) -> Labeler | None:
    """Node labels from the cards (None without cards: the graph labels by id)."""
    cards = load_cards(key)
    if cards is None:
        return None
    tokenizer = get_source(key.source, key.model).tokenizer
    return lambda side, feature: cards.label(side, feature, tokenizer)


def no_cards_message(key: explore.RunKey) -> None:
    if default_cards_root(key.source) is None:
        st.info(
            "Feature cards are kept in a cards/ folder beside a source folder; this source "
            "has none, so no cards can be shown here.",
            icon=":material/style:",
        )
        return
    st.info(
        "This pair has no feature cards yet. Build them (from the source's held-out sample, "
        "or add `--dataset PATH` for your own text) with one command:\n\n"
        f"`{build_command(key.source, key.layer, key.kind)}`",
        icon=":material/style:",
    )


def card_panel(key: explore.RunKey, side: str, feature: int) -> None:
    """One feature's card: its numbers, histogram, top contexts and promoted tokens."""
    cards = load_cards(key)
    if cards is None:
        no_cards_message(key)
        return
    tokenizer = get_source(key.source, key.model).tokenizer
    card = guarded("reading a feature card", cards.card, side, feature, tokenizer)
    if card is None:
        return
    st.markdown(f"**{side}_feature {feature}**")
    a, b, c = st.columns(3)
    a.metric(f"{side} {feature}: fires", f"{card.fires:,}")
    b.metric(f"{side} {feature}: frequency", f"{card.frequency:.3%}")
    c.metric(f"{side} {feature}: max activation", explore.format_number(card.max_act))
    if card.fires == 0:
        st.caption(
            f"It never fired on the {cards.meta['tokens_counted']:,} tokens the cards were built from."
        )
    else:
        st.altair_chart(charts.card_histogram(card.histogram), width="stretch")
        shown = card.contexts[["activation", "before", "token", "after"]]
        st.dataframe(
            shown,
            hide_index=True,
            width="stretch",
            column_config={"activation": st.column_config.NumberColumn(format="%.3g")},
        )
    if card.logits is not None:
        st.caption(
            "Promoted tokens (direct effect on the logits per unit activation, through the "
            "final LayerNorm's gain and the unembedding): "
            + ", ".join(
                f"“{t}” {e:+.3g}"
                for t, e in zip(card.logits["token"], card.logits["effect"], strict=True)
            )
        )


def connection_cards(key: explore.RunKey, in_feature: int, out_feature: int) -> None:
    """Both ends of a connection, side by side."""
    st.subheader(f"Feature cards: in_feature {in_feature} → out_feature {out_feature}")
    cards = load_cards(key)
    if cards is None:
        no_cards_message(key)
        return
    pair = get_source(key.source, key.model).pair(key.layer, key.kind)
    if not cards.built_for(pair):
        st.warning(
            "These cards were built for other weights of this pair (an earlier build of the "
            "source); rebuild them with "
            f"`{build_command(key.source, key.layer, key.kind)}`.",
            icon=":material/history:",
        )
    left, right = st.columns(2)
    with left:
        card_panel(key, "in", in_feature)
    with right:
        card_panel(key, "out", out_feature)
    meta = cards.meta
    st.caption(
        f"Cards built from {meta['sequences']} rows of {meta['context']} tokens "
        f"({meta['tokens_counted']:,} tokens, BOS left out); top contexts by activation."
    )
