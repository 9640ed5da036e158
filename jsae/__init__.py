"""jsae: do the sparse Jacobians of Jacobian sparse autoencoders reflect causal sparsity?

The names below import on first use (``jsae.ablate`` pulls in torch and TransformerLens), so
``import jsae`` and the ``jsae`` command start light: a Ctrl-C while the heavy libraries load
is the command's to handle, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

from jsae.errors import InputError, JSAEError, NumericError, SourceError, UnsupportedError

__version__ = "0.1.0"
"""The package's version (``pyproject.toml``'s); every table jsae writes records it."""

_LAZY = {
    "AblationConfig": "jsae.ablation",
    "AblationResult": "jsae.ablation",
    "AblationBatch": "jsae.ablation",
    "ablate": "jsae.ablation",
    "JSAEPair": "jsae.pair",
    "PAIR_KINDS": "jsae.pair",
    "Sandwich": "jsae.sandwich",
    "DEFAULT_EPS": "jsae.table",
    "split": "jsae.table",
    "write_table": "jsae.table",
    "Provenance": "jsae.provenance",
    "read_provenance": "jsae.provenance",
    "Tolerance": "jsae.stats",
    "summarize": "jsae.stats",
    "Analysis": "jsae.analysis",
    "analyse": "jsae.analysis",
    "Source": "jsae.loading",
    "load_source": "jsae.loading",
    "save_sae_lens_pair": "jsae.loading",
}
"""Each lazily imported name and the module that defines it."""

__all__ = [
    "AblationBatch",
    "AblationConfig",
    "AblationResult",
    "Analysis",
    "DEFAULT_EPS",
    "InputError",
    "JSAEError",
    "JSAEPair",
    "NumericError",
    "PAIR_KINDS",
    "Provenance",
    "Sandwich",
    "Source",
    "SourceError",
    "Tolerance",
    "UnsupportedError",
    "__version__",
    "ablate",
    "analyse",
    "load_source",
    "read_provenance",
    "save_sae_lens_pair",
    "split",
    "summarize",
    "write_table",
]
"""The public API: every name here is documented in the API reference (``make docs``)."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'jsae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
