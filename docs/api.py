"""Build the API reference of the ``jsae`` package from its docstrings with pdoc.

    python docs/api.py [OUTPUT]       # default: docs/api/ (``make docs``)

Every module of the package is rendered (the ``__main__`` entry points aside). ``build``
returns what pdoc warned about, less the notes it makes on jaxtyping's shape annotations
(``Float[Tensor, "..."]`` inside a NamedTuple, which it shows as written); the test suite
fails on anything else (``tests/test_api_docs.py``), so a module that does not import or a
public name that does not resolve breaks CI.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

TOLERATED = ("Error parsing type annotation", "has already been added")
"""pdoc's notes that are not errors: a jaxtyping annotation it cannot evaluate (shown as
written), and a submodule that a package's ``__all__`` also names."""


def modules() -> list[str]:
    """``jsae`` and every module under it, ``__main__`` entry points aside."""
    import jsae

    found = pkgutil.walk_packages(jsae.__path__, "jsae.")
    return ["jsae", *sorted(m.name for m in found if not m.name.endswith("__main__"))]


def resolve_lazy_names(names: list[str]) -> None:
    """Import what each package's ``__all__`` names lazily (``__getattr__``), so that pdoc,
    which looks names up in the module's namespace, finds them."""
    for name in names:
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            value = getattr(module, public)
            module.__dict__.setdefault(public, value)


def build(output: Path) -> list[str]:
    """Render the reference into ``output``; pdoc's warnings, less the tolerated ones."""
    import pdoc

    names = modules()
    resolve_lazy_names(names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*names, output_directory=output)
    return [
        str(w.message)
        for w in caught
        if w.filename.startswith(str(Path(pdoc.__file__).parent))
        and not any(note in str(w.message) for note in TOLERATED)
    ]


if __name__ == "__main__":
    root = Path(__file__).parent.parent
    sys.path.insert(0, str(root))
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "docs" / "api"
    problems = build(target)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"wrote the API reference to {target / 'index.html'}")
    sys.exit(1 if problems else 0)
