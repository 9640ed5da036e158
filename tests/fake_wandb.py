"""A stand-in for the ``wandb`` module's artifact API, so W&B sources load offline: an
artifact is a dict of file names to bytes; its manifest lists each file's size, as
``wandb.Api().artifact(path).manifest.entries`` does, and ``download(root=...)`` writes them,
or breaks off after ``fail_after`` files as an interrupted download does."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from types import SimpleNamespace


class FakeArtifact:
    def __init__(self, files: dict[str, bytes], fail_after: int | None = None):
        self.files = files
        self.fail_after = fail_after
        self.downloads = 0
        self.manifest = SimpleNamespace(
            entries={name: SimpleNamespace(size=len(data)) for name, data in files.items()}
        )

    def download(self, root: str) -> str:
        self.downloads += 1
        Path(root).mkdir(parents=True, exist_ok=True)  # as wandb does
        for n, (name, data) in enumerate(self.files.items()):
            if self.fail_after is not None and n == self.fail_after:
                raise ConnectionError("Connection reset by peer")
            (Path(root) / name).write_bytes(data)
        return root


def install(monkeypatch, artifacts: dict[str, FakeArtifact]) -> None:
    """Make ``import wandb`` give an API that serves ``artifacts`` by path."""

    def artifact(path: str) -> FakeArtifact:
        if path not in artifacts:
            raise ValueError(f"artifact '{path}' not found")
        return artifacts[path]

    module = types.ModuleType("wandb")
    module.Api = lambda: SimpleNamespace(artifact=artifact)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", module)


def folder_files(folder: Path) -> dict[str, bytes]:
    """A folder's files as an artifact's contents."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
