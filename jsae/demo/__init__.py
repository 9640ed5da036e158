"""The bundled default (``jsae/assets/demo``): how it is built, and how good it is.

``settings`` (what it is built with), ``corpus`` (the standard library's text and its
splits), ``language_model`` (the model; its tokenizer is ``jsae.tokenizer``'s), ``build``
(``build_demo``, phase by phase), ``measure`` (``measure_bundle``: its quality on held-out
tokens), ``targets`` (the quality targets and the metrics as text). ``python -m jsae.demo``
and ``jsae train-demo`` rebuild it.
"""

from jsae.demo.build import build_demo
from jsae.demo.corpus import Document, corpus_digest, split_documents, stdlib_documents
from jsae.demo.language_model import (
    language_model_loss,
    new_language_model,
    train_language_model,
    unigram_loss,
)
from jsae.demo.measure import load_heldout_sample, measure_bundle, measure_pair
from jsae.demo.settings import (
    FULL,
    HELDOUT_FILE,
    METRICS_FILE,
    QUICK,
    SPLITS,
    DemoSettings,
)
from jsae.demo.targets import (
    TARGET_EV_IN,
    TARGET_EV_OUT,
    TARGET_OUTPUT_CV,
    TARGET_SPARSITY_RATIO,
    TARGET_UNFIRED_OUT,
    check_targets,
    metrics_table,
    targets_summary,
)
from jsae.tokenizer import BOS, train_tokenizer

__all__ = [
    "BOS",
    "FULL",
    "HELDOUT_FILE",
    "METRICS_FILE",
    "QUICK",
    "SPLITS",
    "TARGET_EV_IN",
    "TARGET_EV_OUT",
    "TARGET_OUTPUT_CV",
    "TARGET_SPARSITY_RATIO",
    "TARGET_UNFIRED_OUT",
    "DemoSettings",
    "Document",
    "build_demo",
    "check_targets",
    "corpus_digest",
    "language_model_loss",
    "load_heldout_sample",
    "measure_bundle",
    "measure_pair",
    "metrics_table",
    "new_language_model",
    "split_documents",
    "stdlib_documents",
    "targets_summary",
    "train_language_model",
    "train_tokenizer",
    "unigram_loss",
]
