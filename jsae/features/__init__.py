"""Feature cards: what each input and output feature of a pair responds to and promotes.

``feature_cards`` builds a pair's cards by streaming over token rows (``jsae.features.build``);
``FeatureCards`` reads them back lazily (``jsae.features.store``); ``corpus_rows`` and
``load_rows`` give the rows (``jsae.features.tokens``); ``promoted_tokens`` is the logit
effect of an output feature's decoder direction (``jsae.features.logits``).
"""

from jsae.features.accumulate import SideStats, log_bins
from jsae.features.build import build_command, cards_root, feature_cards
from jsae.features.logits import folded_unembed, logit_effects, promoted_tokens
from jsae.features.settings import CARDS_DIR, SIDES, CardSettings, card_folder_name
from jsae.features.store import FeatureCard, FeatureCards, pair_fingerprint
from jsae.features.tokens import (
    corpus_rows,
    default_cards_root,
    heldout_path,
    load_rows,
    source_folder,
)

__all__ = [
    "CARDS_DIR",
    "SIDES",
    "CardSettings",
    "FeatureCard",
    "FeatureCards",
    "SideStats",
    "build_command",
    "card_folder_name",
    "cards_root",
    "corpus_rows",
    "default_cards_root",
    "feature_cards",
    "folded_unembed",
    "heldout_path",
    "load_rows",
    "log_bins",
    "logit_effects",
    "pair_fingerprint",
    "promoted_tokens",
    "source_folder",
]
