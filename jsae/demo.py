"""The bundled default (``jsae/assets/demo``): how it is built, and how good it is.

``build_demo`` rebuilds the whole bundle from nothing but the Python installation:

1. **Corpus.** The docstrings of the standard library's modules, classes and functions
   (``ast``, files in sorted order, duplicates dropped), the reference manual's topics that
   ship as ``pydoc_data/topics.py``, and the library's ``.rst``/``.txt`` files. Whole source
   units (a file, or one pydoc topic) are dealt, in a seeded random order, into three
   splits: language-model training (~70% of the characters), SAE training (~25%) and
   held-out (~5%, never used for any training).
2. **Tokenizer.** A byte-level BPE (``tokenizers``) trained on the LM split, with the BOS
   token ``<|endoftext|>``.
3. **Language model.** A small ``HookedTransformer`` (GELU MLPs, LayerNorm) trained with
   AdamW on the LM split; its held-out loss is compared with a unigram baseline (the
   cross-entropy of the held-out tokens under add-one-smoothed LM-split token frequencies).
4. **Pairs.** For every layer, a JSAE pair (λ > 0) and a plain pair (λ = 0), trained with
   :func:`jsae.train.train_pair` on the SAE split with the same data order and seed.
5. **Quality.** :func:`measure_bundle` on a held-out sample stored in the bundle
   (``heldout_tokens.safetensors``): explained variance, features that never fire, the
   fraction of active |J| above 0.01, mean |J|, and the ``unit``-mode ablation summary at
   ε = 0.01. Everything goes into ``metrics.json`` with a ``targets`` section.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import PreTrainedTokenizerFast

from jsae.ablation import AblationConfig, ablate_activations
from jsae.errors import InputError
from jsae.loading import DEMO_DIR, Source, load_source, save_source
from jsae.pair import JSAEPair, hook_in_name, hook_out_name, topk_encode
from jsae.sandwich import Sandwich
from jsae.table import is_important
from jsae.train import PairTrainingConfig, explained_variance, tokenize_documents, train_pair

BOS = "<|endoftext|>"
METRICS_FILE = "metrics.json"
HELDOUT_FILE = "heldout_tokens.safetensors"
EPS = 0.01
SPLITS = ("lm", "sae", "heldout")


@dataclass(frozen=True)
class DemoSettings:
    """Everything ``build_demo`` trains with (``FULL`` for the bundle, ``QUICK`` for tests).

    Args:
        max_chars: stop reading the standard library after this many characters (None: all).
        heldout_fraction, sae_fraction: the splits' shares of the corpus's characters.
        vocab_size: the BPE tokenizer's vocabulary, BOS included.
        n_layers, d_model, d_mlp, d_head, n_ctx: the language model's shape.
        lm_steps, lm_batch_size, lm_lr, lm_warmup_steps, lm_weight_decay: its AdamW training
            (cosine decay to a tenth of ``lm_lr``).
        d_sae, k: every SAE's width and number of active features.
        jacobian_coefficients: λ of the JSAE pair of each layer.
        sae_steps, sae_lr: each layer's pairs' optimizer steps and learning rate.
        aux_k: the AuxK loss's dead features (0: no AuxK).
        dead_window_tokens: the dead-feature window during training (and for AuxK).
            These five take one value for all layers or a tuple with one per layer; the
            plain pair of a layer is trained exactly like its JSAE pair, with λ = 0.
        sae_batch_tokens, jacobian_tokens: every pair's batch, and the tokens of each batch
            the Jacobian penalty is estimated on (see :class:`jsae.train.PairTrainingConfig`).
        sample_sequences: held-out sequences stored in the bundle for measuring it.
        eval_sequences: held-out sequences for the language model's loss (at most).
    """

    max_chars: int | None = None
    heldout_fraction: float = 0.05
    sae_fraction: float = 0.25
    vocab_size: int = 4096
    n_layers: int = 4
    d_model: int = 128
    d_mlp: int = 512
    d_head: int = 32
    n_ctx: int = 256
    lm_steps: int = 400
    lm_batch_size: int = 16
    lm_lr: float = 3e-3
    lm_warmup_steps: int = 50
    lm_weight_decay: float = 0.1
    d_sae: int = 1024
    k: int = 16
    # Tuned on this corpus and model (see the report in metrics.json): layer 0's MLP has
    # a 2-3x larger Jacobian than the others and needs twice the steps.
    jacobian_coefficients: float | tuple[float, ...] = (20.0, 25.0, 20.0, 20.0)
    sae_steps: int | tuple[int, ...] = (600, 300, 300, 300)
    sae_batch_tokens: int = 2048
    sae_lr: float | tuple[float, ...] = 2e-3
    jacobian_tokens: int | None = 512
    aux_k: int | tuple[int, ...] = (64, 0, 0, 0)
    dead_window_tokens: int | tuple[int, ...] = (50_000, 200_000, 200_000, 200_000)
    sample_sequences: int = 16
    eval_sequences: int = 256

    def for_layer(self, name: str, layer: int) -> Any:
        """A per-layer setting's value for ``layer``."""
        value = getattr(self, name)
        return value[layer] if isinstance(value, tuple) else value


FULL = DemoSettings()
QUICK = DemoSettings(
    max_chars=60_000,
    heldout_fraction=0.15,
    sae_fraction=0.3,
    vocab_size=400,
    n_layers=2,
    d_model=32,
    d_mlp=128,
    d_head=8,
    n_ctx=64,
    lm_steps=30,
    lm_batch_size=8,
    lm_warmup_steps=5,
    d_sae=128,
    k=8,
    jacobian_coefficients=1.0,
    sae_steps=20,
    aux_k=16,
    sae_batch_tokens=256,
    jacobian_tokens=None,
    dead_window_tokens=2000,
    sample_sequences=4,
    eval_sequences=16,
)


# --------------------------------------------------------------------------------------
# Corpus


@dataclass(frozen=True)
class Document:
    """One piece of text and the source unit it comes from (a file, or a pydoc topic)."""

    unit: str
    text: str


def stdlib_documents(max_chars: int | None = None, min_chars: int = 20) -> list[Document]:
    """The standard library's English text, in a fixed order (see the module docstring).

    Docstrings shorter than ``min_chars`` and exact repeats are dropped. Files that do not
    parse (Python 2 test data) are skipped.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[Document] = []
    seen: set[str] = set()
    total = 0

    def add(unit: str, text: str) -> bool:
        nonlocal total
        text = text.strip()
        if len(text) < min_chars or text in seen:
            return False
        seen.add(text)
        docs.append(Document(unit, text))
        total += len(text)
        return max_chars is not None and total >= max_chars

    for path in _stdlib_files(root):
        rel = path.relative_to(root).as_posix()
        if path.suffix in (".rst", ".txt"):
            try:
                if add(rel, path.read_text(encoding="utf-8")):
                    return docs
            except UnicodeDecodeError:
                continue
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        if rel == "pydoc_data/topics.py":
            for key, text in sorted(_pydoc_topics(tree).items()):
                if add(f"{rel}:{key}", text):
                    return docs
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.get_docstring(node)
                if text and add(rel, text):
                    return docs
    return docs


def _stdlib_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in ("site-packages", "dist-packages", "__pycache__")
            and not d.startswith("config-")
        )
        for name in sorted(filenames):
            if name.endswith((".py", ".rst", ".txt")):
                yield Path(dirpath) / name


def _pydoc_topics(tree: ast.Module) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return {}


def split_documents(
    docs: list[Document], seed: int, heldout_fraction: float, sae_fraction: float
) -> dict[str, list[Document]]:
    """Deal whole units into ``lm`` / ``sae`` / ``heldout`` by share of characters."""
    by_unit: dict[str, list[Document]] = {}
    for doc in docs:
        by_unit.setdefault(doc.unit, []).append(doc)
    units = sorted(by_unit)
    order = np.random.default_rng([seed, 1]).permutation(len(units))
    total = sum(len(d.text) for d in docs)
    share = {"heldout": heldout_fraction, "sae": sae_fraction}
    share["lm"] = 1 - heldout_fraction - sae_fraction
    splits: dict[str, list[Document]] = {name: [] for name in SPLITS}
    filled = dict.fromkeys(SPLITS, 0)
    for i in order:
        unit_docs = by_unit[units[i]]
        # the split furthest below its share takes the next unit
        name = max(SPLITS, key=lambda s: share[s] * total - filled[s])
        splits[name].extend(unit_docs)
        filled[name] += sum(len(d.text) for d in unit_docs)
    return splits


def corpus_digest(docs: list[Document]) -> str:
    digest = hashlib.sha256()
    for doc in docs:
        digest.update(doc.unit.encode())
        digest.update(b"\0")
        digest.update(doc.text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Tokenizer and language model


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with BOS ``<|endoftext|>``, usable by HookedTransformer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=BOS,
        add_bos_token=True,
        name_or_path="jsae-demo",
    )


def new_language_model(
    settings: DemoSettings, tokenizer: PreTrainedTokenizerFast, seed: int
) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        model_name="jsae-demo",
        n_layers=settings.n_layers,
        d_model=settings.d_model,
        d_mlp=settings.d_mlp,
        d_head=settings.d_head,
        n_heads=settings.d_model // settings.d_head,
        n_ctx=settings.n_ctx,
        d_vocab=len(tokenizer),
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="standard",
        seed=seed,
    )
    return HookedTransformer(cfg, tokenizer=tokenizer)


def train_language_model(
    model: HookedTransformer,
    tokens: Int[Tensor, "n ctx"],
    settings: DemoSettings,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """AdamW with warm-up and cosine decay; sequences in a seeded order per epoch."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.lm_weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lm_lr,
        betas=(0.9, 0.95),
    )
    batch = settings.lm_batch_size
    per_epoch = max(1, len(tokens) // batch)
    history = []
    model.train()
    running, count = 0.0, 0
    for step in range(settings.lm_steps):
        epoch, b = divmod(step, per_epoch)
        order = np.random.default_rng([seed, 2, epoch]).permutation(len(tokens))
        rows = torch.from_numpy(order[b * batch : (b + 1) * batch])
        warm = min(1.0, (step + 1) / max(settings.lm_warmup_steps, 1))
        progress = step / max(settings.lm_steps - 1, 1)
        lr = settings.lm_lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(tokens[rows], return_type="loss")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        running += loss.item()
        count += 1
        if (step + 1) % 50 == 0 or step + 1 == settings.lm_steps:
            history.append({"step": step + 1, "loss": running / count, "lr": lr})
            log(f"  LM step {step + 1}/{settings.lm_steps}: train loss {running / count:.3f}")
            running, count = 0.0, 0
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return history


@torch.no_grad()
def language_model_loss(
    model: HookedTransformer, tokens: Int[Tensor, "n ctx"], batch: int = 16
) -> float:
    """Mean next-token cross-entropy (nats) over every predicted position of ``tokens``."""
    total, count = 0.0, 0
    for start in range(0, len(tokens), batch):
        rows = tokens[start : start + batch]
        per_token = model(rows, return_type="loss", loss_per_token=True)
        total += float(per_token.sum())
        count += per_token.numel()
    return total / count


def unigram_loss(
    train_tokens: Int[Tensor, "n ctx"], heldout_tokens: Int[Tensor, "m ctx"], vocab: int
) -> float:
    """Cross-entropy (nats) of the held-out targets under add-one-smoothed train frequencies.

    Targets are positions 1.. of each row, the ones the language model's loss predicts.
    """
    counts = torch.bincount(train_tokens[:, 1:].reshape(-1), minlength=vocab).double() + 1
    logp = (counts / counts.sum()).log()
    return float(-logp[heldout_tokens[:, 1:].reshape(-1)].mean())


# --------------------------------------------------------------------------------------
# Measuring a bundle


@torch.no_grad()
def measure_bundle(
    source: Source | str | os.PathLike,
    heldout: str | Int[Tensor, "n ctx"] | os.PathLike | None = None,
    *,
    ablation: bool = True,
    eps: float = EPS,
    kinds: tuple[str, ...] | None = None,
    layers: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Quality of a source's pairs on held-out text.

    ``heldout`` is text, token ids ``[sequences, context]`` (rows start with BOS), or the
    path of a ``heldout_tokens.safetensors``; None uses the sample stored in the bundle.
    BOS positions are left out of every statistic. Per pair: ``ev_in``/``ev_out``
    (explained variance, 1 - Σ||x - x̂||² / Σ||x - x̄||²), ``unfired_in``/``unfired_out``
    (features that never fire on the sample), ``frac_abs_j_gt_eps`` and ``mean_abs_j`` (over
    every token's k × k active Jacobian), and with ``ablation`` the ``unit``-mode ablation
    summary at ``eps``: mean |diff| of the important (|J| > eps) and unimportant connections.
    """
    if not isinstance(source, Source):
        source = load_source(source)
    model = source.model
    tokens = _heldout_tokens(source, heldout)
    kinds = kinds or tuple(source.kinds)
    wanted = {
        kind: [layer for layer in source.layers(kind) if layers is None or layer in layers]
        for kind in kinds
    }
    needed = sorted({layer for by_layer in wanted.values() for layer in by_layer})
    hooks = [name for layer in needed for name in (hook_in_name(layer), hook_out_name(layer))]
    acts: dict[str, list[Tensor]] = {hook: [] for hook in hooks}
    bos = model.tokenizer.bos_token_id
    keep = tokens != bos
    for start in range(0, len(tokens), 16):
        rows = tokens[start : start + 16]
        _, cache = model.run_with_cache(rows, names_filter=hooks)
        for hook in hooks:
            acts[hook].append(cache[hook][keep[start : start + 16]].float())
    stacked = {hook: torch.cat(parts) for hook, parts in acts.items()}
    result: dict[str, Any] = {
        "tokens": int(keep.sum()),
        "sequences": len(tokens),
        "lm_loss": language_model_loss(model, tokens),
        "eps": eps,
        "pairs": {},
    }
    for kind, by_layer in wanted.items():
        for layer in by_layer:
            pair = source.pair(layer, kind)
            x, y = stacked[hook_in_name(layer)], stacked[hook_out_name(layer)]
            stats = measure_pair(model, pair, x, y, eps=eps, ablation=ablation)
            result["pairs"].setdefault(kind, {})[str(layer)] = stats
    return result


@torch.no_grad()
def measure_pair(
    model: HookedTransformer,
    pair: JSAEPair,
    x: Float[Tensor, "tokens d_model"],
    y: Float[Tensor, "tokens d_model"],
    *,
    eps: float = EPS,
    ablation: bool = True,
) -> dict[str, Any]:
    """One pair's statistics on MLP inputs ``x`` and the model's MLP outputs ``y``."""
    stats: dict[str, Any] = {
        "ev_in": explained_variance(pair.sae_in, x),
        "ev_out": explained_variance(pair.sae_out, y),
    }
    for side, sae, data in (("in", pair.sae_in, x), ("out", pair.sae_out, y)):
        values, indices = topk_encode(sae, data)
        fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
        fired[indices[values > 0].unique()] = True
        stats[f"unfired_{side}"] = float((~fired).float().mean())
    sandwich = Sandwich(model, pair)
    jacobian = sandwich(x).jacobian.abs()
    stats["frac_abs_j_gt_eps"] = float(is_important(jacobian, eps).double().mean())
    stats["mean_abs_j"] = float(jacobian.double().mean())
    if ablation:
        connections = ablate_activations(sandwich, x, AblationConfig(mode="unit"))
        important = is_important(connections.jacobian, eps)
        diff = connections.diff.abs().double()
        stats["ablation"] = {
            "mode": "unit",
            "eps": eps,
            "important_mean_abs_diff": _mean(diff[important]),
            "unimportant_mean_abs_diff": _mean(diff[~important]),
            "important_connections": int(important.sum()),
            "unimportant_connections": int((~important).sum()),
        }
    return stats


def _mean(values: Tensor) -> float | None:
    return float(values.mean()) if len(values) else None


def _heldout_tokens(source: Source, heldout: Any) -> Int[Tensor, "n ctx"]:
    model = source.model
    if heldout is None:
        folder = DEMO_DIR if source.name == "demo" else Path(source.name)
        if not (folder / HELDOUT_FILE).is_file():
            raise InputError("Pass the held-out text or tokens: this source stores no sample.")
        heldout = folder / HELDOUT_FILE
    if isinstance(heldout, Tensor):
        tokens = heldout.long()
    elif isinstance(heldout, os.PathLike) or (
        isinstance(heldout, str) and heldout.endswith(".safetensors") and Path(heldout).is_file()
    ):
        tokens = load_heldout_sample(heldout)
    else:
        tokens = tokenize_documents(model, [heldout], model.cfg.n_ctx)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.numel() == 0:
        raise InputError("The held-out text is too short to fill one sequence.")
    return tokens


def load_heldout_sample(path: str | os.PathLike) -> Int[Tensor, "n ctx"]:
    return load_file(str(path))["tokens"].long()


# --------------------------------------------------------------------------------------
# The build


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
        log("Reading the standard library's docstrings and docs ...")
        docs = stdlib_documents(settings.max_chars)
        splits = split_documents(docs, seed, settings.heldout_fraction, settings.sae_fraction)
        texts = {name: [d.text for d in split] for name, split in splits.items()}
        chars = {name: sum(map(len, t_)) for name, t_ in texts.items()}
        log(f"  {len(docs)} documents, {sum(chars.values()):,} characters: {chars}")
        t = lap("corpus", t)

        tokenizer = train_tokenizer(texts["lm"], settings.vocab_size)
        model = new_language_model(settings, tokenizer, seed)
        tokens = {name: tokenize_documents(model, texts[name], settings.n_ctx) for name in SPLITS}
        n_tokens = {name: int(tok.numel()) for name, tok in tokens.items()}
        log(f"  tokenizer: {len(tokenizer)} tokens; sequences of {settings.n_ctx}: {n_tokens}")
        t = lap("tokenizer", t)

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

        pairs: dict[str, dict[int, JSAEPair]] = {"jsae": {}, "plain": {}}
        training: dict[str, dict[str, Any]] = {"jsae": {}, "plain": {}}
        for layer in range(settings.n_layers):
            steps = settings.for_layer("sae_steps", layer)
            coefficient_jsae = settings.for_layer("jacobian_coefficients", layer)
            for kind, coefficient in (("plain", 0.0), ("jsae", coefficient_jsae)):
                config = PairTrainingConfig(
                    layer=layer,
                    d_sae=settings.d_sae,
                    k=settings.k,
                    jacobian_coefficient=coefficient,
                    lr=settings.for_layer("sae_lr", layer),
                    batch_tokens=settings.sae_batch_tokens,
                    steps=steps,
                    seed=seed,
                    context_size=settings.n_ctx,
                    jacobian_tokens=settings.jacobian_tokens,
                    dead_window_tokens=settings.for_layer("dead_window_tokens", layer),
                    aux_k=settings.for_layer("aux_k", layer),
                    warmup_steps=min(50, steps // 10),
                )
                t_pair = time.perf_counter()
                result = train_pair(model, tokens["sae"], config, progress=progress)
                pairs[kind][layer] = result.pair
                last = result.history[-1] if result.history else {}
                training[kind][str(layer)] = {
                    "jacobian_coefficient": coefficient,
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
                    f"({training[kind][str(layer)]['seconds']:.0f}s)"
                )
        t = lap("pairs", t)

        staging = output.with_name(output.name + ".building")
        if staging.exists():
            shutil.rmtree(staging)
        sample = tokens["heldout"][: settings.sample_sequences].to(torch.int32).contiguous()
        info = {
            "description": (
                "jsae's bundled default: a small language model trained on the Python "
                "standard library's documentation, with a JSAE pair and a plain pair per layer."
            ),
            "metrics": METRICS_FILE,
            "heldout_sample": HELDOUT_FILE,
        }
        save_source(staging, model, pairs, info=info)
        save_file({"tokens": sample}, staging / HELDOUT_FILE)

        log("Measuring the bundle on the held-out sample ...")
        loaded = load_source(staging)
        measured = measure_bundle(loaded, staging / HELDOUT_FILE)
        t = lap("measure", t)

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
            "config": {
                "n_layers": settings.n_layers,
                "d_model": settings.d_model,
                "d_mlp": settings.d_mlp,
                "n_heads": settings.d_model // settings.d_head,
                "d_head": settings.d_head,
                "n_ctx": settings.n_ctx,
                "d_vocab": len(tokenizer),
                "act_fn": "gelu",
                "normalization_type": "LN",
                # the shipped weights have the LayerNorms folded into the next layers
                "shipped_normalization_type": model.cfg.normalization_type,
            },
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
    }
    metrics["targets"] = check_targets(measured)
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


TARGET_EV_IN = 0.8
TARGET_EV_OUT = 0.7
TARGET_SPARSITY_RATIO = 0.25


def check_targets(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """The quality targets, each with the value reached and whether it was met."""
    targets = []
    pairs = measured["pairs"]
    for kind, by_layer in pairs.items():
        for layer, stats in by_layer.items():
            for side, threshold in (("in", TARGET_EV_IN), ("out", TARGET_EV_OUT)):
                value = stats[f"ev_{side}"]
                targets.append(
                    {
                        "name": f"ev_{side} >= {threshold}",
                        "kind": kind,
                        "layer": int(layer),
                        "value": value,
                        "met": value >= threshold,
                    }
                )
    for layer, stats in pairs.get("jsae", {}).items():
        plain = pairs.get("plain", {}).get(layer)
        if plain is None:
            continue
        ratio = stats["frac_abs_j_gt_eps"] / max(plain["frac_abs_j_gt_eps"], 1e-12)
        targets.append(
            {
                "name": f"jsae frac |J|>{measured['eps']} <= {TARGET_SPARSITY_RATIO} x plain",
                "kind": "jsae",
                "layer": int(layer),
                "value": ratio,
                "met": ratio <= TARGET_SPARSITY_RATIO,
            }
        )
    return targets


def targets_summary(targets: list[dict[str, Any]]) -> str:
    missed = [t for t in targets if not t["met"]]
    if not missed:
        return f"All {len(targets)} quality targets met."
    lines = [f"{len(missed)} of {len(targets)} quality targets missed:"]
    lines += [
        f"  {t['kind']} layer {t['layer']}: {t['name']} (got {t['value']:.4f})" for t in missed
    ]
    return "\n".join(lines)


def metrics_table(metrics: dict[str, Any]) -> str:
    """The per-pair metrics as a markdown table."""
    rows = [
        "| layer | kind | λ | EV in | EV out | dead in/out (train) | unfired in/out (held-out) "
        "| frac abs J>0.01 | mean abs J | mean abs diff important | mean abs diff unimportant |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    measured = metrics["measured"]["pairs"]
    for layer in sorted({int(k) for by in measured.values() for k in by}):
        for kind in ("jsae", "plain"):
            stats = measured.get(kind, {}).get(str(layer))
            if stats is None:
                continue
            train = metrics.get("training", {}).get(kind, {}).get(str(layer), {})
            abl = stats.get("ablation", {})
            rows.append(
                f"| {layer} | {kind} | {train.get('jacobian_coefficient', float('nan')):g} "
                f"| {stats['ev_in']:.3f} | {stats['ev_out']:.3f} "
                f"| {train.get('dead_in', float('nan')):.3f} / {train.get('dead_out', float('nan')):.3f} "
                f"| {stats['unfired_in']:.3f} / {stats['unfired_out']:.3f} "
                f"| {stats['frac_abs_j_gt_eps']:.4f} | {stats['mean_abs_j']:.5f} "
                f"| {_fmt(abl.get('important_mean_abs_diff'))} "
                f"| {_fmt(abl.get('unimportant_mean_abs_diff'))} |"
            )
    return "\n".join(rows)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.5f}"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=list))


def main(argv: list[str] | None = None) -> int:
    """``python -m jsae.demo OUTPUT [--quick] [--seed N]`` (until the CLI wires it up)."""
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild jsae's bundled default.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    metrics = build_demo(args.output, quick=args.quick, seed=args.seed)
    print(metrics_table(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "FULL",
    "QUICK",
    "DemoSettings",
    "build_demo",
    "measure_bundle",
    "measure_pair",
    "metrics_table",
]
