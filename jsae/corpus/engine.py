"""The ablation engine over windows: one source's pair, loaded once, ablating shard by shard.

``WindowEngine.run_unit`` runs each window of a ``Unit`` through the model up to the tested
MLP's input, ablates every position (BOS left out unless asked) with
``jsae.ablation.ablate_activations``, and lays the connections out as one Arrow table in
``SHARD_SCHEMA``: documents and token strings dictionary-encoded, ``important`` at the job's ε.
With ``CorpusJob.joint``, each window's joint ablation (``jsae.analysis.joint``) is reduced to
its exact sums at the job's ε, and a shard's merged sums travel in its Parquet schema metadata
under ``JOINT_METADATA`` (covered by the shard's SHA-256 like its rows).
With a ``CorpusJob.sampler`` other than ``all``, a shard keeps only the connections it
chooses (``jsae.sampler.sampled_rows``, per token, seeded by the token's document, window and
position); the joint sums are taken before, over every input.
``WindowEngine.identity`` is what a rerun must match to resume an output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from jsae.ablation import ablate_activations
from jsae.analysis.faithfulness import JointSums
from jsae.analysis.joint import JOINT_SEED, joint_curves
from jsae.corpus.job import CorpusJob
from jsae.corpus.plan import DoneSet, Unit, Window, plan_units
from jsae.corpus.reader import Corpus
from jsae.corpus.store import JOINT_METADATA, SHARD_COLUMNS, SHARD_SCHEMA
from jsae.errors import InputError
from jsae.loading import DEMO_SOURCE, load_source
from jsae.prompt import first_ablated, mlp_inputs, token_strings
from jsae.sampler import sampled_rows
from jsae.sandwich import Sandwich
from jsae.table import DOCUMENT_COLUMN, WINDOW_COLUMN, connection_columns, is_important

TARGET_SHARD_ROWS = 2_000_000
SAMPLED_BY = (WINDOW_COLUMN, "position", "in_feature", "out_feature", "in_act", "out_act")
"""The columns besides the document a sampler reads."""


class WindowEngine:
    """The ablation engine for windows of one source's pair: loads the source once.

    Args:
        job: the run (source, layer, pair kind, ablation settings, ε).
        device: overrides ``job.device`` (a Ray worker picks its GPU).
    """

    def __init__(self, job: CorpusJob, device: str | None = None):
        self.job = job
        self.source = load_source(job.source, model=job.model, device=device or job.device)
        self.layer = job.layer if job.layer is not None else self.source.layers(job.pair_kind)[0]
        self.pair = self.source.pair(self.layer, job.pair_kind)
        self.model = self.source.model_for(self.layer, job.pair_kind)
        self.pair.check_model(self.model)
        self.tokenizer = self.model.tokenizer
        if self.tokenizer is None:
            raise InputError("The model has no tokenizer; a corpus run needs one.")
        self.bos = self.tokenizer.bos_token_id
        n_ctx = self.model.cfg.n_ctx
        self.window_tokens = job.window_tokens or n_ctx
        if self.window_tokens > n_ctx or self.window_tokens < 1 + (self.bos is not None):
            raise InputError(
                f"--window-tokens must be between {1 + (self.bos is not None)} and the model's "
                f"context, {n_ctx}; got {self.window_tokens}."
            )
        self.sandwich = Sandwich(self.model, self.pair)
        self.connections_per_token = self.pair.k_in * self.pair.k_out
        self._strings: dict[int, str] = {}  # token id -> its string, over every unit so far

    @property
    def shard_tokens(self) -> int:
        return self.job.shard_tokens or max(1, TARGET_SHARD_ROWS // self.connections_per_token)

    def identity(self, corpus: Corpus) -> dict[str, Any]:
        """What must match for a rerun to resume this output folder."""
        cfg = self.job.config
        source, model = self.job.source, self.job.model
        return {
            "source": source if source == DEMO_SOURCE else _folder_or_name(source),
            "model": None if model is None else _folder_or_name(model),
            "layer": self.layer,
            "pair": self.job.pair_kind,
            "mode": cfg.mode,
            "scale": cfg.scale if cfg.mode == "scale" else None,
            "include_bos": cfg.include_bos,
            "eps": self.job.eps,
            "window_tokens": self.window_tokens,
            "k_in": self.pair.k_in,
            "k_out": self.pair.k_out,
            "d_sae_in": self.pair.d_sae_in,
            "d_sae_out": self.pair.d_sae_out,
            "dataset_kind": corpus.kind,
            "text_column": corpus.text_column if corpus.kind == "hf" else None,
            "split": corpus.split,
            "dataset_fingerprint": corpus.fingerprint(),
        } | (  # old runs, without these keys, resume
            ({"joint": True} if self.job.joint else {})
            | (self.job.sampler.record() if self.job.sampler.how != "all" else {})
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def first_ablated(self, tokens: np.ndarray) -> int:
        return first_ablated(tokens, self.bos, self.job.config.include_bos)

    def ablated(self, tokens: np.ndarray) -> int:
        """How many positions of a window are ablated (BOS excluded unless asked)."""
        return len(tokens) - self.first_ablated(tokens)

    def plan(self, corpus: Corpus, done: DoneSet, **kwargs) -> Iterator[Unit]:
        """``plan_units`` with this engine's tokenizer, window size and shard size."""
        return plan_units(
            corpus,
            self.encode,
            self.window_tokens,
            self.bos,
            ablated=self.ablated,
            done=done,
            shard_tokens=self.shard_tokens,
            max_tokens=self.job.max_tokens,
            **kwargs,
        )

    def run_unit(
        self, unit: Unit, progress: Callable[[int], None] | None = None
    ) -> tuple[pa.Table, int]:
        """Ablate every window of a unit: the shard's table and how many tokens it ablated."""
        cfg = self.job.config
        dtype = self.sandwich.mlp.W_in.dtype
        columns: dict[str, list] = {name: [] for name in SHARD_COLUMNS if name != "important"}
        documents: dict[str, int] = {}
        tokens_done = 0
        joint: JointSums | None = None
        for w in unit.windows:
            tokens = torch.from_numpy(w.tokens)
            x = mlp_inputs(self.model, tokens, self.layer).to(dtype)
            first = self.first_ablated(w.tokens)
            positions = torch.arange(first, len(tokens))
            c = connection_columns(ablate_activations(self.sandwich, x[first:], cfg, positions))
            if self.job.joint:
                curves = joint_curves(self.sandwich, x[first:], cfg, positions, window_seed(w))
                sums = JointSums.of(curves, self.job.eps)
                joint = sums if joint is None else joint.merge(sums)
            n = len(c["diff"])
            columns["document"].append(
                np.full(n, documents.setdefault(w.document, len(documents)), np.int32)
            )
            columns["window"].append(np.full(n, w.index, np.int32))
            columns["token"].append(w.tokens[c["position"]])
            for name, values in c.items():
                columns[name].append(values)
            tokens_done += len(positions)
            if progress is not None:
                progress(len(positions))
        data = {name: np.concatenate(parts) for name, parts in columns.items()}
        if self.job.sampler.how != "all":
            data = self._sampled(data, list(documents))
        arrays = {
            "document": pa.DictionaryArray.from_arrays(
                pa.array(data["document"], pa.int32()), pa.array(list(documents), pa.string())
            ),
            "token": self._token_column(
                data["token"], np.concatenate([w.tokens for w in unit.windows])
            ),
        }
        for name in SHARD_COLUMNS:
            if name == "important":
                arrays[name] = pa.array(is_important(data["jacobian"], self.job.eps))
            elif name not in arrays:
                arrays[name] = pa.array(data[name])
        table = pa.Table.from_arrays([arrays[n] for n in SHARD_COLUMNS], schema=SHARD_SCHEMA)
        if joint is not None:
            table = table.replace_schema_metadata({JOINT_METADATA: json.dumps(joint.to_dict())})
        return table, tokens_done

    def _sampled(self, data: dict[str, np.ndarray], documents: list[str]) -> dict:
        """The unit's columns keeping only the rows the job's sampler chooses; each token is
        named as a shard names it (document id, window, position)."""
        names = np.asarray(documents, dtype=object)[data[DOCUMENT_COLUMN]]
        frame = pd.DataFrame({DOCUMENT_COLUMN: names} | {k: data[k] for k in SAMPLED_BY})
        keep = sampled_rows(frame, self.job.sampler)
        return {name: values[keep] for name, values in data.items()}

    def _token_column(self, ids: np.ndarray, vocab: np.ndarray) -> pa.DictionaryArray:
        """Token strings per row, dictionary-encoded; ``vocab``: the unit's token ids."""
        unique = np.unique(vocab)
        new = [t for t in unique.tolist() if t not in self._strings]
        self._strings.update(zip(new, token_strings(self.tokenizer, new), strict=True))
        strings = [self._strings[t] for t in unique.tolist()]
        categories = list(dict.fromkeys(strings))  # distinct ids may decode alike
        code_of = {s: i for i, s in enumerate(categories)}
        lookup = np.zeros(int(unique[-1]) + 1 if len(unique) else 1, dtype=np.int32)
        lookup[unique] = [code_of[s] for s in strings]
        return pa.DictionaryArray.from_arrays(
            pa.array(lookup[ids], pa.int32()), pa.array(categories, pa.string())
        )


def window_seed(window: Window) -> int:
    """The random order's seed for one window: from ``JOINT_SEED`` and the window's place in
    the corpus, so that a shard's result does not depend on how the run was split."""
    return int(
        np.random.SeedSequence([JOINT_SEED, window.ordinal, window.index]).generate_state(1)[0]
    )


def _folder_or_name(name: str) -> str:
    """An existing folder as its absolute path (a rerun from another working directory names
    the same run), anything else (a model name, a W&B path) as given."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name
