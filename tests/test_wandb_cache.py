"""The W&B download cache: an interrupted or incomplete download is never taken for a
finished one (the next load fetches it again), ``refresh`` fetches again, and the cache lives
in the platform's user cache folder unless overridden. ``wandb`` is the offline stand-in of
``tests.fake_wandb``; the reference for "complete" is the artifact's own file list."""

import platformdirs
import pytest

from jsae.cli import main
from jsae.errors import SourceError
from jsae.loading import load_source, save_model_folder, save_research_pair
from jsae.loading.wandb_artifact import (
    DOWNLOADED,
    artifact_folder,
    cache_root,
    download_wandb_artifact,
    is_downloaded,
)
from tests import fake_wandb
from tests.helpers import tiny_model, tiny_pair

PATH = "me/jsae/pair_l0:v0"


@pytest.fixture
def pair_files(tmp_path):
    """A research pair folder's files (cfg.json first, the weights second), and its model."""
    model = tiny_model()
    folder = save_research_pair(tiny_pair(model, layer=0), tmp_path / "made", model_name="tiny")
    files = fake_wandb.folder_files(folder)
    return {"cfg.json": files["cfg.json"], **files}, model


def test_an_interrupted_download_is_fetched_again(tmp_path, monkeypatch, pair_files):
    files, model = pair_files
    artifact = fake_wandb.FakeArtifact(files, fail_after=1)  # cfg.json written, then it breaks
    fake_wandb.install(monkeypatch, {PATH: artifact})
    cache = tmp_path / "cache"
    with pytest.raises(SourceError, match="Connection reset"):
        load_source(PATH, model=model, cache_dir=cache)
    folder = artifact_folder(PATH, cache)
    assert not folder.exists()  # nothing half-downloaded sits where a download belongs
    assert list((cache / "artifacts").iterdir()) == []  # and no temporary folder is left
    artifact.fail_after = None  # the network is back
    source = load_source(PATH, model=model, cache_dir=cache)
    assert source.layers() == [0] and artifact.downloads == 2
    assert is_downloaded(folder) and (folder / DOWNLOADED).is_file()
    load_source(PATH, model=model, cache_dir=cache)  # from the cache now
    assert artifact.downloads == 2


def test_a_partial_folder_left_by_an_older_download_is_fetched_again(
    tmp_path, monkeypatch, pair_files
):
    files, model = pair_files
    artifact = fake_wandb.FakeArtifact(files)
    fake_wandb.install(monkeypatch, {PATH: artifact})
    folder = artifact_folder(PATH, tmp_path)
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_bytes(files["cfg.json"])  # what an interrupted download left
    assert load_source(PATH, model=model, cache_dir=tmp_path).layers() == [0]
    assert artifact.downloads == 1


def test_a_download_missing_a_listed_file_is_refused_and_not_cached(
    tmp_path, monkeypatch, pair_files
):
    files, _ = pair_files
    artifact = fake_wandb.FakeArtifact(files)
    artifact.manifest.entries["sparsity.safetensors"] = type(
        "Entry", (), {"size": 10}
    )()  # listed, never written
    fake_wandb.install(monkeypatch, {PATH: artifact})
    with pytest.raises(SourceError, match=r"incomplete: sparsity\.safetensors is missing"):
        download_wandb_artifact(PATH, tmp_path)
    assert not artifact_folder(PATH, tmp_path).exists()


def test_a_file_of_the_wrong_size_makes_the_cache_stale(tmp_path, monkeypatch, pair_files):
    files, _ = pair_files
    artifact = fake_wandb.FakeArtifact(files)
    fake_wandb.install(monkeypatch, {PATH: artifact})
    folder = download_wandb_artifact(PATH, tmp_path)
    (folder / "sae_weights.safetensors").write_bytes(b"truncated")
    assert not is_downloaded(folder)
    download_wandb_artifact(PATH, tmp_path)
    assert artifact.downloads == 2 and is_downloaded(folder)


def test_refresh_downloads_again(tmp_path, monkeypatch, pair_files, capsys):
    files, model = pair_files
    artifact = fake_wandb.FakeArtifact(files)
    fake_wandb.install(monkeypatch, {PATH: artifact})
    download_wandb_artifact(PATH, tmp_path)
    download_wandb_artifact(PATH, tmp_path)
    assert artifact.downloads == 1
    download_wandb_artifact(PATH, tmp_path, refresh=True)
    assert artifact.downloads == 2
    monkeypatch.setenv("JSAE_CACHE", str(tmp_path))
    folder = artifact_folder(PATH)
    save_model_folder(model, folder.parent / "tiny")  # the model the pair's cfg names
    monkeypatch.chdir(folder.parent)
    assert main(["info", "--source", PATH, "--refresh"]) == 0
    assert artifact.downloads == 3 and "layer 0" in capsys.readouterr().out


def test_the_cache_is_the_platform_user_cache_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv("JSAE_CACHE", raising=False)
    assert cache_root() == platformdirs.user_cache_path("jsae")
    name = "me__jsae__pair_l0__v0"
    assert artifact_folder(PATH) == platformdirs.user_cache_path("jsae") / "artifacts" / name
    monkeypatch.setenv("JSAE_CACHE", str(tmp_path / "env"))
    assert artifact_folder(PATH) == tmp_path / "env" / "artifacts" / name
    assert artifact_folder(PATH, tmp_path / "arg") == tmp_path / "arg" / "artifacts" / name
