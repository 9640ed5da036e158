"""A pair as two sae-lens SAE folders: ``pair.json`` + ``in/`` and ``out/``.

``pair.json`` holds the pair's ``layer``, its ``kind`` and the names of the two folders
(``in`` and ``out`` unless it says otherwise); each folder is what sae-lens ``save_model``
writes and ``SAE.load_from_disk`` reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sae_lens import SAE
from safetensors import SafetensorError

from jsae.errors import JSAEError, SourceError
from jsae.loading.files import read_json, write_json
from jsae.pair import JSAEPair, check_topk_sae

SAE_LENS_PAIR_MANIFEST = "pair.json"
SIDES = ("in", "out")
"""The manifest's keys for the input and output SAE folders, and their default names."""


def save_sae_lens_pair(pair: JSAEPair, path: str | os.PathLike) -> Path:
    """Write ``pair`` as ``pair.json`` + ``in/`` and ``out/`` (sae-lens ``save_model``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for side, sae in zip(SIDES, (pair.sae_in, pair.sae_out), strict=True):
        sae.save_model(path / side)
    manifest = {"layer": pair.layer, "kind": pair.kind, **{side: side for side in SIDES}}
    write_json(manifest, path / SAE_LENS_PAIR_MANIFEST)
    return path


def load_sae_lens_pair(
    path: Path, device: str = "cpu", kind: str | None = None
) -> tuple[JSAEPair, dict[str, Any]]:
    """Read a sae-lens pair folder; returns the pair and its manifest."""
    manifest = read_json(path / SAE_LENS_PAIR_MANIFEST)
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
    try:
        layer = int(manifest["layer"])
    except (KeyError, TypeError, ValueError):
        raise SourceError(f"{path / SAE_LENS_PAIR_MANIFEST} needs an integer 'layer'.") from None
    pair = JSAEPair(saes[0], saes[1], layer=layer, kind=kind or manifest.get("kind", "jsae"))
    return pair, manifest
