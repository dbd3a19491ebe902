"""The run folder: everything a selection run writes, and reading it back.

A run folder holds:

- ``config.json``: the selection config, code version, dataset and pool size.
- ``status.json``: state (running, finished, failed, cancelled, interrupted), the
  last finished epoch and, on failure, the error. Written last, so a folder whose
  state is not ``finished`` never passes for a finished run.
- ``metrics.jsonl``: one line per finished epoch.
- ``pool.npy``: indices of the scored pool in the source dataset.
- ``similarity.npy``: (epochs, N) float16, row e holding epoch e's similarities,
  column i example i of the pool.
- ``scores.csv``, ``embeddings.npy``, ``checkpoint.pt`` and the selection CSVs.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreset_core import __version__
from coreset_core.config import SelectionConfig
from coreset_core.datasets import ImageDataset, load_dataset
from coreset_core.selection import (
    rank_order,
    scores_from_similarity,
    select,
    subset_size,
)

STATES = ("running", "finished", "failed", "cancelled", "interrupted")


class RunBusy(ValueError):
    """Another process or job is training this run right now."""


class Run:
    """Read access to one run folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"{self.path} is not a run folder (no config.json)")
        self.info = json.loads((self.path / "config.json").read_text())
        self.config = SelectionConfig.from_dict(self.info["config"])

    @property
    def name(self) -> str:
        return self.path.name

    def status(self) -> dict[str, Any]:
        path = self.path / "status.json"
        if not path.exists():
            return {
                "state": "running",
                "epoch": 0,
                "epochs": self.config.epochs,
                "error": None,
            }
        status: dict[str, Any] = json.loads(path.read_text())
        return status

    def metrics(self) -> pd.DataFrame:
        path = self.path / "metrics.jsonl"
        if not path.exists() or path.stat().st_size == 0:
            return pd.DataFrame(columns=["epoch", "loss"])
        return pd.read_json(path, lines=True)

    def similarity(self) -> np.ndarray:
        return np.load(self.path / "similarity.npy")

    def scores(self) -> pd.DataFrame:
        return pd.read_csv(
            self.path / "scores.csv", keep_default_na=False, na_values={"label": [""]}
        )

    def embeddings(self) -> np.ndarray:
        return np.load(self.path / "embeddings.npy")

    def pool_indices(self) -> np.ndarray:
        return np.load(self.path / "pool.npy")

    def load_pool(self) -> ImageDataset:
        """The images the run scored, in the order of its indices."""
        dataset = load_dataset(self.config.data, self.config.data_root, download=False)
        return dataset.subset(self.pool_indices())


def list_runs(out_dir: Path) -> list[Run]:
    """Every run folder under out_dir, newest first."""
    if not Path(out_dir).is_dir():
        return []
    folders = [p for p in Path(out_dir).iterdir() if (p / "config.json").exists()]
    return [Run(p) for p in sorted(folders, key=lambda p: p.name, reverse=True)]


def create_run_dir(out_dir: Path, config: SelectionConfig, dataset_name: str) -> Path:
    """A new, uniquely named folder: <time>-<dataset>-<method>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset_name)
    base = Path(out_dir) / f"{stamp}-{safe}-{config.method}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


@contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for one trainer at a time.

    An flock dies with its process, so a killed run never leaves a stale lock,
    and a run whose status still reads "running" after a crash can be resumed.
    """
    handle = open(Path(run_dir) / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunBusy(
            f"{run_dir}: another process or job is training this run"
        ) from None
    try:
        yield
    finally:
        handle.close()


def code_version() -> str:
    """The git commit of the code when it is a checkout, else the package version."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+{commit}"


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write JSON through a temporary file, so readers never see half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=2))
    os.replace(partial, path)


def write_status(
    run_dir: Path, state: str, epoch: int, epochs: int, error: str | None = None
) -> None:
    assert state in STATES, state
    write_json(
        run_dir / "status.json",
        {
            "state": state,
            "epoch": epoch,
            "epochs": epochs,
            "error": error,
            "updated": time.time(),
        },
    )


def write_scores(run_dir: Path, pool: ImageDataset, scores: np.ndarray) -> Path:
    """scores.csv: index (into the pool), id, label, score and rank (1 = lowest)."""
    table = _score_table(pool.ids, pool.labels, scores)
    path = run_dir / "scores.csv"
    table.to_csv(path, index=False)
    return path


def _score_table(
    ids: list[str], labels: np.ndarray | None, scores: np.ndarray
) -> pd.DataFrame:
    rank = np.empty(len(scores), dtype=np.int64)
    rank[rank_order(scores)] = np.arange(1, len(scores) + 1)
    table = pd.DataFrame({"index": np.arange(len(scores)), "id": ids})
    table["label"] = pd.array(labels, dtype="Int64") if labels is not None else pd.NA
    table["score"] = scores
    table["rank"] = rank
    return table


def selection_table(
    run_dir: Path,
    fraction: float | None = None,
    count: int | None = None,
    strategy: str = "lowest",
    window: tuple[int, int] | None = None,
    offset: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Every pool example with its score, rank and decision (keep or drop)."""
    run = Run(run_dir)
    if run.status()["state"] != "finished":
        raise ValueError(f"{run_dir}: the run has not finished; nothing to select from")
    scores = scores_from_similarity(run.similarity(), window)
    base = run.scores()
    labels = (
        base["label"].to_numpy(dtype=np.int64) if base["label"].notna().all() else None
    )
    size = subset_size(len(scores), fraction, count)
    kept = select(scores, size, strategy, labels=labels, offset=offset, seed=seed)

    table = _score_table(base["id"].tolist(), labels, scores)
    table["decision"] = "drop"
    table.loc[kept, "decision"] = "keep"
    return table


def export_selection(
    run_dir: Path,
    fraction: float | None = None,
    count: int | None = None,
    strategy: str = "lowest",
    window: tuple[int, int] | None = None,
    offset: int = 0,
    seed: int = 0,
) -> Path:
    """Write selection_<strategy>_<size>[_options].csv into the run folder.

    Options that change the selection join the name (epochs3-10, offset50,
    seed1), so no export overwrites another.
    """
    table = selection_table(run_dir, fraction, count, strategy, window, offset, seed)
    parts = [strategy, f"{fraction:.2f}" if fraction is not None else f"n{count}"]
    if window is not None:
        parts.append(f"epochs{window[0] + 1}-{window[1]}")
    if strategy == "offset":
        parts.append(f"offset{offset}")
    if strategy == "random":
        parts.append(f"seed{seed}")
    path = Path(run_dir) / f"selection_{'_'.join(parts)}.csv"
    table.to_csv(path, index=False)
    return path
