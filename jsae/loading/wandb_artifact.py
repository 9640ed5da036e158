"""W&B artifacts: ``entity/project/name:version``, downloaded once into a local cache folder.

The folder is then read like any local folder. The cache is ``cache_dir``, else the
``JSAE_CACHE`` environment variable, else the platform's user cache folder for ``jsae``
(``platformdirs``: ``~/.cache/jsae`` on Linux, ``~/Library/Caches/jsae`` on macOS).

A download goes into a temporary folder beside its place in the cache and moves there (one
rename) only once every file the artifact's manifest lists is present with its listed size;
``DOWNLOADED`` in the folder records that list. So an interrupted or incomplete download
never counts as downloaded: the next load fetches it again. ``refresh`` fetches it again
anyway.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import platformdirs

from jsae.errors import SourceError, first_line
from jsae.loading.files import read_json, write_json

WANDB_ARTIFACT = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+:[\w.-]+$")
CACHE_ENV = "JSAE_CACHE"
DOWNLOADED = ".jsae-downloaded.json"
"""Written last into a verified download: the artifact's path and its files' sizes."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$JSAE_CACHE``, else the platform's user cache folder."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return platformdirs.user_cache_path("jsae")


def artifact_folder(artifact_path: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``artifact_path`` is (or will be) downloaded to."""
    name = artifact_path.replace("/", "__").replace(":", "__")
    return cache_root(cache_dir) / "artifacts" / name


def is_downloaded(folder: Path) -> bool:
    """Whether ``folder`` holds a verified download: its record and every file it lists, each
    with the listed size."""
    try:
        files = read_json(folder / DOWNLOADED)["files"]
        return all((folder / name).stat().st_size == size for name, size in files.items())
    except (SourceError, KeyError, TypeError, AttributeError, OSError):
        return False


def download_wandb_artifact(
    artifact_path: str, cache_dir: str | os.PathLike | None = None, refresh: bool = False
) -> Path:
    """The local folder of a W&B artifact: from the cache when a verified download is there
    (unless ``refresh``), else downloaded, verified against the artifact's file list and
    moved into place."""
    folder = artifact_folder(artifact_path, cache_dir)
    if not refresh and is_downloaded(folder):
        return folder
    artifact = _wandb_call(artifact_path, lambda wandb: wandb.Api().artifact(artifact_path))
    expected = _manifest_sizes(artifact, artifact_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        _wandb_call(artifact_path, lambda _: artifact.download(root=str(partial)))
        _check_complete(partial, expected, artifact_path)
        write_json({"artifact": artifact_path, "files": expected}, partial / DOWNLOADED)
        if folder.exists():  # an older, incomplete or refreshed download
            shutil.rmtree(folder)
        try:
            os.replace(partial, folder)
        except OSError:
            if not is_downloaded(folder):  # not a concurrent download that finished first
                raise
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def _wandb_call(artifact_path: str, call: Any) -> Any:
    """``call(wandb)``, with wandb's errors (CommError, requests errors, ValueError, ...) as
    one ``SourceError``."""
    try:
        import wandb  # here, not at the top: wandb is slow to import and only W&B sources need it

        return call(wandb)
    except ImportError:
        raise SourceError(
            "W&B sources need the wandb package: pip install 'jsae[wandb]'."
        ) from None
    except Exception as err:
        raise SourceError(
            f"Could not download the W&B artifact {artifact_path!r}: "
            f"{first_line(err)}. Check the path, "
            "your network and WANDB_API_KEY, or download it yourself and pass the folder."
        ) from None


def _manifest_sizes(artifact: Any, artifact_path: str) -> dict[str, int]:
    """Every file the artifact's manifest lists, with its size in bytes."""
    try:
        entries = artifact.manifest.entries
        return {str(name): int(entry.size) for name, entry in entries.items()}
    except (AttributeError, TypeError, ValueError) as err:
        raise SourceError(
            f"The W&B artifact {artifact_path!r} has no readable file list ({first_line(err)})."
        ) from None


def _check_complete(folder: Path, expected: dict[str, int], artifact_path: str) -> None:
    """Refuse a download missing a listed file or holding one of another size."""
    for name, size in expected.items():
        path = folder / name
        with contextlib.suppress(OSError):
            if path.stat().st_size == size:
                continue
        got = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
        raise SourceError(
            f"The download of the W&B artifact {artifact_path!r} is incomplete: {name} is "
            f"{got}, the artifact lists {size} bytes. Nothing was cached; run again (add "
            "--refresh to be sure) or check your network."
        )
