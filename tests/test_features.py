"""Feature cards against a slow reference: a plain loop over tokens reading the model's own
hooks (a folded model, where ``ln2.hook_normalized`` is the MLP input) and encoding with
sae-lens's ``encode``; the histogram rule against ``jsae.histogram.shared_counts``; the
logit effects against TransformerLens's own ``fold_ln``; resuming against an uninterrupted
build."""

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from jsae.corpus import open_corpus
from jsae.errors import InputError, SourceError
from jsae.features import (
    CardSettings,
    FeatureCards,
    corpus_rows,
    feature_cards,
    logit_effects,
    promoted_tokens,
)
from jsae.features.settings import CHECKPOINT_FILE, CONTEXTS_FILE, FEATURES_FILE, LOGITS_FILE
from jsae.histogram import shared_counts
from jsae.loading import Source
from jsae.pair import hook_in_name, hook_out_name
from jsae.train import tokenize_documents
from tests.helpers import TEXT, random_token_rows, tiny_model, tiny_pair

SETTINGS = CardSettings(
    n_top=3, n_logits=4, bins=8, log10_range=(-2.0, 1.0), batch_rows=4, checkpoint_rows=8
)


@pytest.fixture(scope="module")
def folded_source() -> Source:
    torch.manual_seed(3)
    model = tiny_model(folded=True)
    return Source("tiny", model, {"jsae": {1: tiny_pair(model, 1, d_sae=32, k=4)}})


@pytest.fixture(scope="module")
def rows() -> torch.Tensor:
    return random_token_rows()[:12]


def reference_firings(source: Source, rows: torch.Tensor) -> dict[str, pd.DataFrame]:
    """Every firing (activation > 0, BOS left out), one token at a time."""
    model, pair = source.model, source.pair(1, "jsae")
    found = {"in": [], "out": []}
    with torch.no_grad():
        for s, row in enumerate(rows):
            _, cache = model.run_with_cache(
                row[None], names_filter=[hook_in_name(1), hook_out_name(1)]
            )
            for p in range(1, len(row)):
                for side, sae, hook in (
                    ("in", pair.sae_in, hook_in_name(1)),
                    ("out", pair.sae_out, hook_out_name(1)),
                ):
                    acts = sae.encode(cache[hook][0, p])
                    for f in torch.nonzero(acts > 0).flatten().tolist():
                        found[side].append((f, float(acts[f]), s, p))
    return {
        side: pd.DataFrame(v, columns=["feature", "act", "sequence", "position"])
        for side, v in found.items()
    }


def test_cards_match_a_token_by_token_loop(folded_source, rows, tmp_path):
    folder = feature_cards(
        folded_source, 1, "jsae", rows, tmp_path, settings=SETTINGS, progress=False
    )
    cards = FeatureCards(folder)
    reference = reference_firings(folded_source, rows)
    counted = 12 * 31
    assert cards.meta["tokens_counted"] == counted
    lo, hi = SETTINGS.log10_range
    for side, firings in reference.items():
        table = cards.features[cards.features["side"] == side].set_index("feature")
        fires = firings.groupby("feature").size().reindex(range(32), fill_value=0)
        np.testing.assert_array_equal(table["fires"], fires)
        np.testing.assert_allclose(table["frequency"], fires / counted)
        for f in (0, 5, 17, 31):
            logs = np.clip(np.log10(firings.loc[firings.feature == f, "act"]), lo, hi)
            _, counts = shared_counts({"f": logs.to_numpy()}, (lo, hi), SETTINGS.bins)
            np.testing.assert_array_equal(table.loc[f, "histogram"], counts["f"])
        for f in range(32):
            mine = cards.card(side, f)
            want = (
                firings[firings.feature == f]
                .sort_values(["act", "sequence", "position"], ascending=[False, True, True])
                .head(3)
            )
            np.testing.assert_array_equal(mine.contexts["sequence"], want["sequence"])
            np.testing.assert_array_equal(mine.contexts["position"], want["position"])
            np.testing.assert_allclose(mine.contexts["activation"], want["act"], rtol=1e-3)
            np.testing.assert_array_equal(
                mine.contexts["token_id"],
                rows.numpy()[want["sequence"].to_numpy(), want["position"].to_numpy()],
            )


def test_card_text_and_logits(folded_source, rows, tmp_path):
    folder = feature_cards(
        folded_source, 1, "jsae", rows, tmp_path, settings=SETTINGS, progress=False
    )
    cards = FeatureCards(folder)
    tokenizer = folded_source.tokenizer
    fired = cards.features[(cards.features.side == "out") & (cards.features.fires > 0)]
    card = cards.card("out", int(fired.feature.iloc[0]), tokenizer, window=2)
    first = card.contexts.iloc[0]
    s, p = int(first.sequence), int(first.position)
    assert first.token == tokenizer.decode([int(rows[s, p])])
    assert first.before == tokenizer.decode(rows[s, max(0, p - 2) : p].tolist())
    assert first.after == tokenizer.decode(rows[s, p + 1 : p + 3].tolist())
    assert len(card.logits) == 4 and card.logits["token"].tolist() == [
        tokenizer.decode([t]) for t in card.logits["token_id"]
    ]
    assert cards.card("in", 0).logits is None
    assert cards.built_for(folded_source.pair(1, "jsae"))
    other = tiny_pair(folded_source.model, 1, d_sae=32, k=4)
    assert not cards.built_for(other)
    with pytest.raises(InputError, match="0..31"):
        cards.card("in", 32)


def test_logit_effects_fold_the_final_layer_norm_as_transformer_lens_does():
    model = tiny_model()  # LayerNorm with a random gain: folding it matters
    folded = copy.deepcopy(model)
    folded.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    directions = torch.randn(5, model.cfg.d_model)
    want = (directions - directions.mean(-1, keepdim=True)) @ folded.W_U
    torch.testing.assert_close(logit_effects(model, directions), want)
    torch.testing.assert_close(logit_effects(folded, directions), want)
    tokens, values = promoted_tokens(model, directions, 3, batch=2)
    top = torch.topk(want, 3)
    torch.testing.assert_close(values, top.values)
    assert torch.equal(tokens, top.indices)


class Killed(Exception):
    pass


def test_a_killed_build_resumes_to_the_same_cards(folded_source, rows, tmp_path):
    whole = feature_cards(
        folded_source, 1, "jsae", rows, tmp_path / "a", settings=SETTINGS, progress=False
    )

    def kill(done):
        raise Killed(done)

    with pytest.raises(Killed):
        feature_cards(
            folded_source,
            1,
            "jsae",
            rows,
            tmp_path / "b",
            settings=SETTINGS,
            progress=False,
            on_checkpoint=kill,
        )
    folder = tmp_path / "b" / "jsae" / "layer_1"
    assert (folder / CHECKPOINT_FILE).is_file() and not (folder / "cards.json").exists()
    with pytest.raises(SourceError, match="no finished cards"):
        FeatureCards(folder)
    seen = []
    resumed = feature_cards(
        folded_source,
        1,
        "jsae",
        rows,
        tmp_path / "b",
        settings=SETTINGS,
        progress=False,
        on_checkpoint=seen.append,
    )
    assert seen == []  # 12 rows, checkpoints after 8: only the last 4 rows were run again
    assert not (resumed / CHECKPOINT_FILE).exists()
    for name in (FEATURES_FILE, CONTEXTS_FILE, LOGITS_FILE):
        pd.testing.assert_frame_equal(
            pd.read_parquet(whole / name), pd.read_parquet(resumed / name)
        )
    a, b = (json.loads((f / "cards.json").read_text()) for f in (whole, resumed))
    assert a["tokens_counted"] == b["tokens_counted"] and a["identity"] == b["identity"]


def test_finished_cards_are_kept_and_other_cards_replaced(folded_source, rows, tmp_path):
    folder = feature_cards(
        folded_source, 1, "jsae", rows, tmp_path, settings=SETTINGS, progress=False
    )
    built = (folder / "cards.json").stat().st_mtime_ns
    seen = []
    again = feature_cards(
        folded_source,
        1,
        "jsae",
        rows,
        tmp_path,
        settings=SETTINGS,
        progress=False,
        on_checkpoint=seen.append,
    )
    assert again == folder and seen == [] and (folder / "cards.json").stat().st_mtime_ns == built
    feature_cards(folded_source, 1, "jsae", rows[:4], tmp_path, settings=SETTINGS, progress=False)
    assert FeatureCards(folder).meta["sequences"] == 4


def test_a_checkpoint_of_other_rows_is_refused(folded_source, rows, tmp_path):
    with pytest.raises(Killed):
        feature_cards(
            folded_source,
            1,
            "jsae",
            rows,
            tmp_path,
            settings=SETTINGS,
            progress=False,
            on_checkpoint=lambda d: (_ for _ in ()).throw(Killed()),
        )
    with pytest.raises(InputError, match="unfinished build"):
        feature_cards(
            folded_source, 1, "jsae", rows.flip(0), tmp_path, settings=SETTINGS, progress=False
        )


def test_corpus_rows_pack_documents_as_training_does(tmp_path):
    model = tiny_model()
    (tmp_path / "a.txt").write_text(TEXT * 3)
    (tmp_path / "b.txt").write_text(TEXT[::-1] * 2)
    corpus = open_corpus(tmp_path)
    want = tokenize_documents(model, [TEXT * 3, TEXT[::-1] * 2], 16)
    got = corpus_rows(model, corpus, 16, max_tokens=10_000)
    assert torch.equal(got, want)
    few = corpus_rows(model, corpus, 16, max_tokens=20)
    assert torch.equal(few, want[:2])  # 20 tokens need two rows of 15
    with pytest.raises(InputError, match="context"):
        corpus_rows(model, corpus, 1, max_tokens=20)


def test_settings_validate_themselves():
    with pytest.raises(InputError, match="multiple"):
        CardSettings(batch_rows=3, checkpoint_rows=8)
    with pytest.raises(InputError, match="n_top"):
        CardSettings(n_top=0)
    with pytest.raises(InputError, match="low < high"):
        CardSettings(log10_range=(1.0, 1.0))
