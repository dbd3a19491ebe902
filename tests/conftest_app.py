"""Fixtures for the app's tests, on top of conftest's finished_run.

Test modules import them by name (pytest registers fixtures found in a module).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


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
