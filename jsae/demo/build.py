"""Building the bundled default (``jsae/assets/demo``) from nothing but the Python installation.

1. **Corpus.** The standard library's English text (:mod:`jsae.demo.corpus`), dealt by whole
   source units into three splits: language-model training (~70% of the characters), SAE
   training (~25%) and held-out (~5%, never used for any training).
2. **Tokenizer.** A byte-level BPE trained on the LM split, with the BOS token
   ``<|endoftext|>`` (:mod:`jsae.demo.language_model`).
3. **Language model.** A small ``HookedTransformer`` (GELU MLPs, LayerNorm) trained with
   AdamW on the LM split; its held-out loss is compared with a unigram baseline. Its
   LayerNorms are then folded, so that the input SAEs read exactly the MLPs' input.
4. **Pairs.** For every layer, a pair of every kind of :mod:`jsae.demo.kinds` (``plain``,
   λ = 0; ``jsae``, the research objective; ``normalized``), trained with
   :func:`jsae.train.train_pair` on the SAE split with the same data order and seed.
5. **Quality.** The bundle is saved with a held-out sample (``heldout_tokens.safetensors``)
   and measured on it with :func:`jsae.demo.measure.measure_bundle`.
6. **Feature cards** of every pair from the same sample (:func:`jsae.features.feature_cards`,
   into ``cards/``).
7. **Metrics.** Everything goes into ``metrics.json`` with a ``targets`` section
   (:mod:`jsae.demo.targets`), and the bundle is moved into place.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int
from safetensors.torch import save_file
from torch import Tensor
from transformer_lens import HookedTransformer

from jsae.demo.corpus import corpus_digest, split_documents, stdlib_documents
from jsae.demo.kinds import KindRecipe, declared_kinds
from jsae.demo.language_model import (
    ACT_FN,
    NORMALIZATION_TYPE,
    language_model_loss,
    new_language_model,
    train_language_model,
    unigram_loss,
)
from jsae.demo.measure import measure_bundle
from jsae.demo.settings import FULL, HELDOUT_FILE, METRICS_FILE, QUICK, SPLITS, DemoSettings
from jsae.demo.targets import check_targets, targets_summary
from jsae.features import CARDS_DIR, feature_cards
from jsae.loading import load_source, save_source
from jsae.pair import JSAEPair
from jsae.tokenizer import train_tokenizer
from jsae.train import PairTrainingConfig, tokenize_documents, train_pair

DESCRIPTION = (
    "jsae's bundled default: a small language model trained on the Python "
    "standard library's documentation, with a plain pair and two kinds of JSAE pair per "
    "layer: the research objective and the normalized penalty."
)


def build_demo(
    output: Path | str,
    *,
    quick: bool = False,
    seed: int = 0,
    log: Callable[[str], None] = print,
    settings: DemoSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Rebuild the bundled default into ``output`` and return its metrics (see module doc).

    ``quick`` builds a miniature (a small corpus, model and pairs, for tests) in seconds.
    The bundle is assembled next to ``output`` and moved into place at the end, so a failed
    build leaves an existing bundle untouched.
    """
    settings = settings or (QUICK if quick else FULL)
    output = Path(output)
    # wall-clock seconds and this process's CPU seconds (all threads) of every stage: on a
    # shared machine the CPU time says what the build costs, the wall clock what it took
    started = time.perf_counter(), time.process_time()
    timings: dict[str, dict[str, float]] = {}

    def lap(name: str, since: tuple[float, float]) -> tuple[float, float]:
        now = time.perf_counter(), time.process_time()
        timings[name] = {"wall": round(now[0] - since[0], 2), "cpu": round(now[1] - since[1], 2)}
        return now

    t = started
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # 1. Corpus
        log("Reading the standard library's docstrings and docs ...")
        docs = stdlib_documents(settings.max_chars)
        splits = split_documents(docs, seed, settings.heldout_fraction, settings.sae_fraction)
        texts = {name: [d.text for d in split] for name, split in splits.items()}
        chars = {name: sum(map(len, t_)) for name, t_ in texts.items()}
        log(f"  {len(docs)} documents, {sum(chars.values()):,} characters: {chars}")
        t = lap("corpus", t)

        # 2. Tokenizer (and the untrained model, whose tokenizer cuts every split into rows)
        tokenizer = train_tokenizer(texts["lm"], settings.vocab_size)
        model = new_language_model(settings, tokenizer, seed)
        tokens = {name: tokenize_documents(model, texts[name], settings.n_ctx) for name in SPLITS}
        n_tokens = {name: int(tok.numel()) for name, tok in tokens.items()}
        log(f"  tokenizer: {len(tokenizer)} tokens; sequences of {settings.n_ctx}: {n_tokens}")
        t = lap("tokenizer", t)

        # 3. Language model
        log(f"Training the language model ({settings.lm_steps} steps) ...")
        lm_history = train_language_model(model, tokens["lm"], settings, seed, log)
        # Fold the LayerNorms' weights into the next layers (as from_pretrained does), so
        # that ln2.hook_normalized, which the input SAEs read, is exactly the MLP's input.
        model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
        heldout_eval = tokens["heldout"][settings.sample_sequences :][: settings.eval_sequences]
        if len(heldout_eval) == 0:
            heldout_eval = tokens["heldout"]
        lm_loss = language_model_loss(model, heldout_eval)
        baseline = unigram_loss(tokens["lm"], heldout_eval, len(tokenizer))
        log(f"  held-out loss {lm_loss:.3f} nats (unigram baseline {baseline:.3f})")
        t = lap("language_model", t)

        # 4. Pairs
        pairs, training = train_pairs(model, tokens["sae"], settings, seed, log, progress)
        t = lap("pairs", t)

        # 5. The bundle, assembled in a staging folder, and its quality on the held-out sample
        staging = output.with_name(output.name + ".building")
        if staging.exists():
            shutil.rmtree(staging)
        sample = tokens["heldout"][: settings.sample_sequences].to(torch.int32).contiguous()
        info = {"description": DESCRIPTION, "metrics": METRICS_FILE, "heldout_sample": HELDOUT_FILE}
        save_source(staging, model, pairs, info=info, pair_kinds=declared_kinds(settings.kinds))
        save_file({"tokens": sample}, staging / HELDOUT_FILE)

        log("Measuring the bundle on the held-out sample ...")
        loaded = load_source(staging)
        measured = measure_bundle(loaded, staging / HELDOUT_FILE)
        t = lap("measure", t)

        # 6. Feature cards of every pair, from the same held-out sample (what
        # `jsae features --source demo` rebuilds)
        log("Building every pair's feature cards on the held-out sample ...")
        for kind in loaded.kinds:
            for layer in loaded.layers(kind):
                feature_cards(loaded, layer, kind, sample, staging / CARDS_DIR, progress=progress)
        cards_bytes = sum(p.stat().st_size for p in (staging / CARDS_DIR).rglob("*") if p.is_file())
        t = lap("cards", t)

    # 7. metrics.json, then the bundle moved into place
    metrics: dict[str, Any] = {
        "build": {
            "seed": seed,
            "quick": quick,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seconds": timings,
            "settings": _jsonable(asdict(settings)),
        },
        "corpus": {
            "source": (
                f"Python {platform.python_version()} standard library: docstrings, "
                "pydoc_data topics, .rst/.txt files"
            ),
            "sha256": corpus_digest(docs),
            "documents": {name: len(split) for name, split in splits.items()},
            "characters": chars,
            "tokens": n_tokens,
        },
        "language_model": {
            "config": _language_model_config(model, settings),
            "parameters": sum(p.numel() for p in model.parameters()),
            "steps": settings.lm_steps,
            "tokens_trained": settings.lm_steps * settings.lm_batch_size * settings.n_ctx,
            "heldout_loss": lm_loss,
            "unigram_loss": baseline,
            "heldout_eval_tokens": int(heldout_eval[:, 1:].numel()),
            "history": lm_history,
        },
        "training": training,
        "measured": measured,
        "cards": {"folder": CARDS_DIR, "bytes": cards_bytes},
    }
    metrics["targets"] = check_targets(measured, training)
    metrics["all_targets_met"] = all(t_["met"] for t_ in metrics["targets"])
    lap("total", started)
    (staging / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    if output.exists():
        shutil.rmtree(output)
    staging.rename(output)
    total = timings["total"]
    log(f"Wrote {output} in {total['wall']:.0f}s ({total['cpu']:.0f} CPU seconds).")
    log(targets_summary(metrics["targets"]))
    return metrics


def pair_config(
    settings: DemoSettings, layer: int, recipe: KindRecipe, seed: int
) -> PairTrainingConfig:
    """How the demo trains layer ``layer``'s pair of kind ``recipe``: the demo's scale
    (``settings``), the research code's schedules, and the kind's objective, λ and init."""
    return PairTrainingConfig(
        layer=layer,
        d_sae=settings.d_sae,
        k=settings.k,
        jacobian_coefficient=recipe.coefficient(layer),
        lr=settings.for_layer("sae_lr", layer),
        batch_tokens=settings.sae_batch_tokens,
        steps=settings.for_layer("sae_steps", layer),
        seed=seed,
        context_size=settings.n_ctx,
        jacobian_tokens=settings.jacobian_tokens,
        dead_window_tokens=settings.for_layer("dead_window_tokens", layer),
        aux_k=settings.for_layer("aux_k", layer),
        **dict(recipe.overrides),
    )


def train_pairs(
    model: HookedTransformer,
    tokens: Int[Tensor, "n ctx"],
    settings: DemoSettings,
    seed: int,
    log: Callable[[str], None],
    progress: bool,
) -> tuple[dict[str, dict[int, JSAEPair]], dict[str, dict[str, Any]]]:
    """Every layer's pair of every kind of ``settings.kinds``, and a summary of each one's
    training (``metrics.json``'s ``training``: kind -> layer -> figures)."""
    pairs: dict[str, dict[int, JSAEPair]] = {r.name: {} for r in settings.kinds}
    training: dict[str, dict[str, Any]] = {r.name: {} for r in settings.kinds}
    for layer in range(settings.n_layers):
        for recipe in settings.kinds:
            kind, coefficient = recipe.name, recipe.coefficient(layer)
            config = pair_config(settings, layer, recipe, seed)
            t_pair = time.perf_counter()
            result = train_pair(model, tokens, config, progress=progress)
            pairs[kind][layer] = dataclasses.replace(result.pair, kind=kind)
            last = result.history[-1] if result.history else {}
            summary = training[kind][str(layer)] = {
                "jacobian_coefficient": coefficient,
                "objective": config.objective,
                "steps": result.step,
                "tokens": result.tokens_seen,
                "dead_in": result.dead_fraction_in,
                "dead_out": result.dead_fraction_out,
                "final": last,
                "seconds": round(time.perf_counter() - t_pair, 2),
            }
            log(
                f"  layer {layer} {kind} (λ={coefficient:g}): "
                f"EV in {1 - last.get('fvu_in', 1):.3f}, out {1 - last.get('fvu_out', 1):.3f}, "
                f"mean|J| {last.get('jacobian_penalty', float('nan')):.4f}, dead "
                f"{result.dead_fraction_in:.3f}/{result.dead_fraction_out:.3f} "
                f"({summary['seconds']:.0f}s)"
            )
    return pairs, training


def _language_model_config(model: HookedTransformer, settings: DemoSettings) -> dict[str, Any]:
    """The language model's shape as ``metrics.json`` reports it."""
    return {
        "n_layers": settings.n_layers,
        "d_model": settings.d_model,
        "d_mlp": settings.d_mlp,
        "n_heads": model.cfg.n_heads,
        "d_head": settings.d_head,
        "n_ctx": settings.n_ctx,
        "d_vocab": model.cfg.d_vocab,
        "act_fn": ACT_FN,
        "normalization_type": NORMALIZATION_TYPE,
        # the shipped weights have the LayerNorms folded into the next layers
        "shipped_normalization_type": model.cfg.normalization_type,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))
