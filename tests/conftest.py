"""Shared fixtures: a private cache, real CIFAR-10 images, and one finished run."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from coreset_core.config import SelectionConfig
from coreset_core.datasets import BUILTIN_PATH

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(
    os.environ.get("CORESET_SHARED_DATASETS", ROOT.parent / "shared" / "datasets")
)

# A run small enough for the CPU in seconds: 300 real images, 2 epochs.
TINY_RUN = SelectionConfig(epochs=2, pool_size=300, batch_size=64, fraction=0.3)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep the dataset cache inside the test session, as on a fresh machine."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["CORESET_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def cifar_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real CIFAR-10 JPEGs as an image folder: 12 train and 3 test images per class."""
    root = tmp_path_factory.mktemp("cifar")
    with tarfile.open(BUILTIN_PATH) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        keep = [
            m
            for m in members
            if int(Path(m.name).stem) < (12 if m.name.startswith("train/") else 3)
        ]
        archive.extractall(root, members=keep, filter="data")
    return root


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real selection run on 300 built-in CIFAR-10 images."""
    from coreset_core.training import run_selection

    return run_selection(TINY_RUN, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def app_runs(finished_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder of the module's own holding a copy of finished_run.

    A copy, so that what the app writes there (catalog, UMAP, selections)
    never reaches the shared run other tests read.
    """
    runs_dir = tmp_path_factory.mktemp("app-runs")
    shutil.copytree(finished_run, runs_dir / finished_run.name)
    return runs_dir


@pytest.fixture
def app_env(
    app_runs: Path, finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """app_runs as the app's CORESET_RUNS_DIR; returns the copied run's folder."""
    monkeypatch.setenv("CORESET_RUNS_DIR", str(app_runs))
    return app_runs / finished_run.name
