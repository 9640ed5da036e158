"""W&B artifacts: ``entity/project/name:version``, downloaded once into a local cache folder.

The folder is then read like any local folder. The cache is ``cache_dir``, else the
``JSAE_CACHE`` environment variable, else ``~/.cache/jsae``; an artifact already there is not
downloaded again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jsae.errors import SourceError, first_line

WANDB_ARTIFACT = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+:[\w.-]+$")
CACHE_ENV = "JSAE_CACHE"


def artifact_folder(artifact_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``artifact_path`` is (or will be) downloaded to."""
    cache = Path(cache_dir or os.environ.get(CACHE_ENV, Path.home() / ".cache" / "jsae"))
    return cache / "artifacts" / artifact_path.replace("/", "__").replace(":", "__")


def download_wandb_artifact(artifact_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Download a W&B artifact into ``cache_dir`` once, and return the local folder."""
    folder = artifact_folder(artifact_path, cache_dir)
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    try:
        import wandb  # here, not at the top: wandb is slow to import and only W&B sources need it

        artifact = wandb.Api().artifact(artifact_path)
        artifact.download(root=str(folder))
    except Exception as err:  # wandb raises CommError, requests errors, ValueError, ...
        raise SourceError(
            f"Could not download the W&B artifact {artifact_path!r}: "
            f"{first_line(err)}. Check the path, "
            "your network and WANDB_API_KEY, or download it yourself and pass the folder."
        ) from None
    return folder
