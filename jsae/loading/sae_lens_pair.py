"""A pair as two sae-lens SAE folders: ``in/`` and ``out/`` (and, optionally, ``pair.json``).

Each folder is what sae-lens ``save_model`` writes and ``SAE.load_from_disk`` reads: the
input SAE's metadata names the MLP input ``blocks.L.ln2.hook_normalized``, the output SAE's
the MLP output ``blocks.L.hook_mlp_out``, and both name the model they read. ``pair.json``
holds the pair's ``layer``, its ``kind`` and the two folders' names (``in`` and ``out``
unless it says otherwise); without it the layer comes from the SAEs' hook names, the model
from their ``model_name`` and the kind is ``jsae``.

``save_sae_lens_pair`` writes both, so a pair exported from any source opens in sae-lens
(``SAE.load_from_disk(DIR / "in")``) and loads back into jsae as it was.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from sae_lens import SAE
from safetensors import SafetensorError

from jsae.errors import InputError, JSAEError, SourceError
from jsae.loading.files import read_json, write_json
from jsae.pair import DEFAULT_KIND, JSAEPair, check_topk_sae, hook_out_name

SAE_LENS_PAIR_MANIFEST = "pair.json"
SIDES = ("in", "out")
"""The manifest's keys for the input and output SAE folders, and their default names."""
SAE_LENS_CFG = "cfg.json"


def save_sae_lens_pair(
    pair: JSAEPair, path: str | os.PathLike, model_name: str | None = None
) -> Path:
    """Write ``pair`` as ``in/`` and ``out/`` (sae-lens ``save_model``, hook names set) plus
    ``pair.json``. ``model_name`` (a TransformerLens name or a model folder) is recorded in
    both SAEs' metadata; by default, whatever they already record."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for side, sae, hook in zip(
        SIDES, (pair.sae_in, pair.sae_out), (pair.hook_in, pair.hook_out), strict=True
    ):
        metadata = sae.cfg.metadata
        before = (metadata.hook_name, metadata.model_name)
        metadata.hook_name = hook
        metadata.model_name = model_name or metadata.model_name
        try:
            sae.save_model(path / side)
        finally:  # the pair's own SAEs are left as they were
            metadata.hook_name, metadata.model_name = before
    manifest = {"layer": pair.layer, "kind": pair.kind, **{side: side for side in SIDES}}
    write_json(manifest, path / SAE_LENS_PAIR_MANIFEST)
    return path


def is_sae_lens_pair(path: Path) -> bool:
    """Whether ``path`` holds a sae-lens pair: ``pair.json``, or ``in/`` and ``out/`` sae-lens
    folders."""
    return (path / SAE_LENS_PAIR_MANIFEST).is_file() or all(
        (path / side / SAE_LENS_CFG).is_file() for side in SIDES
    )


def load_sae_lens_pair(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """Read a sae-lens pair folder; returns the pair and its manifest (with the SAEs'
    ``model_name`` when ``pair.json`` is absent or does not name one)."""
    has_manifest = (path / SAE_LENS_PAIR_MANIFEST).is_file()
    manifest = read_json(path / SAE_LENS_PAIR_MANIFEST) if has_manifest else {}
    saes = []
    for side in SIDES:
        folder = path / manifest.get(side, side)
        try:
            sae = SAE.load_from_disk(folder, device=device)
        except FileNotFoundError:
            raise SourceError(
                f"{folder} is missing (a sae-lens pair needs in/ and out/)."
            ) from None
        except (SafetensorError, json.JSONDecodeError, KeyError, ValueError, OSError) as err:
            raise SourceError(f"{folder} could not be read as a sae-lens SAE: {err}") from None
        try:  # here, so the error names the folder
            check_topk_sae(sae, "input" if side == SIDES[0] else "output")
        except JSAEError as err:
            raise type(err)(f"{folder}: {err}") from None
        saes.append(sae)
    layer = _layer(manifest, saes, path) if has_manifest else _layer_from_hooks(saes, path)
    model_name = manifest.get("model_name") or _model_name(saes, path)
    if model_name:
        manifest = {**manifest, "model_name": model_name}
    pair = JSAEPair(saes[0], saes[1], layer=layer, kind=kind or manifest.get("kind", DEFAULT_KIND))
    return pair, manifest


def _layer(manifest: dict[str, Any], saes: list[SAE], path: Path) -> int:
    try:
        return int(manifest["layer"])
    except (KeyError, TypeError, ValueError):
        raise SourceError(f"{path / SAE_LENS_PAIR_MANIFEST} needs an integer 'layer'.") from None


def _layer_from_hooks(saes: list[SAE], path: Path) -> int:
    """The block both SAEs' hook names point at, checked to be the MLP's input and output."""
    hooks = [sae.cfg.metadata.hook_name for sae in saes]
    match = re.fullmatch(r"blocks\.(\d+)\.ln2\.hook_normalized", str(hooks[0]))
    if match is None or hooks[1] != hook_out_name(int(match.group(1))):
        raise SourceError(
            f"{path} has no {SAE_LENS_PAIR_MANIFEST}, so its SAEs' hook names must say the "
            "layer: in/ must read blocks.L.ln2.hook_normalized and out/ "
            "blocks.L.hook_mlp_out of the same block L; they read "
            f"{hooks[0]!r} and {hooks[1]!r}. Add {SAE_LENS_PAIR_MANIFEST} with 'layer'."
        )
    return int(match.group(1))


def _model_name(saes: list[SAE], path: Path) -> str | None:
    """The model both SAEs' metadata name (one naming it is enough; two different is an
    error)."""
    names = {sae.cfg.metadata.model_name for sae in saes} - {None, ""}
    if len(names) > 1:
        raise InputError(
            f"The SAEs in {path} name different models ({', '.join(sorted(names))}); a pair "
            "reads one model."
        )
    return names.pop() if names else None
