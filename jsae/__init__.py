"""jsae: do the sparse Jacobians of Jacobian sparse autoencoders reflect causal sparsity?

The names below import on first use (``jsae.ablate`` pulls in torch and TransformerLens), so
``import jsae`` and the ``jsae`` command start light: a Ctrl-C while the heavy libraries load
is the command's to handle, not a traceback.
"""

from __future__ import annotations

import importlib
from typing import Any

from jsae.errors import InputError, JSAEError, SourceError, UnsupportedError

_LAZY = {
    "AblationConfig": "jsae.ablation",
    "AblationResult": "jsae.ablation",
    "ablate": "jsae.ablation",
    "JSAEPair": "jsae.pair",
    "Sandwich": "jsae.sandwich",
    "split": "jsae.table",
}

__all__ = [
    "AblationConfig",
    "AblationResult",
    "InputError",
    "JSAEError",
    "JSAEPair",
    "Sandwich",
    "SourceError",
    "UnsupportedError",
    "ablate",
    "split",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'jsae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
