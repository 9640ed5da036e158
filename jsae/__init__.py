"""jsae: do the sparse Jacobians of Jacobian sparse autoencoders reflect causal sparsity?"""

from jsae.ablation import AblationConfig, AblationResult, ablate
from jsae.errors import InputError, JSAEError, SourceError, UnsupportedError
from jsae.pair import JSAEPair
from jsae.sandwich import Sandwich
from jsae.table import split

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
