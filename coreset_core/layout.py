"""A 2-D UMAP layout of a run's embeddings, computed once and kept in the run folder.

The layout is what the Explore page plots: one point per pool example, placed
by UMAP (McInnes et al. 2018) from the backbone embeddings with cosine
distance, the geometry the contrastive loss trains.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

LAYOUT_FILE = "umap.npy"
LAYOUT_INFO_FILE = "umap.json"
EMBEDDINGS_FILE = "embeddings.npy"

# Above this many points a scatter plot in the browser gets slow; the page
# plots a random sample of this size and says so.
PLOT_LIMIT = 20_000


@dataclass(frozen=True)
class LayoutEvent:
    """Progress of a layout job: stage `step` of `steps`, named in `message`."""

    step: int
    steps: int
    message: str
    kind: str = "stage"


def load_layout(run_dir: Path) -> np.ndarray | None:
    """The cached layout (N, 2) float32, or None when missing or stale."""
    run_dir = Path(run_dir)
    path, info_path = run_dir / LAYOUT_FILE, run_dir / LAYOUT_INFO_FILE
    if not path.exists() or not info_path.exists():
        return None
    # stale when the embeddings were rewritten after the fit (a resumed run)
    info = json.loads(info_path.read_text())
    if info.get("embeddings") != _fingerprint(run_dir / EMBEDDINGS_FILE):
        return None
    return np.load(path)


def compute_layout(
    run_dir: Path,
    on_event: Callable[[LayoutEvent], None] | None = None,
    stop: threading.Event | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Fit UMAP to the run's embeddings (N, D), save and return the layout (N, 2).

    NOTE: the fit itself cannot be interrupted; `stop` is honoured before it
    starts. The first fit in a process spends ~45 s compiling numba code.
    """
    from coreset_core.training import Cancelled

    run_dir = Path(run_dir)
    emit = on_event or (lambda event: None)
    source = run_dir / EMBEDDINGS_FILE
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: the run has no embeddings yet")

    # load: embeddings (N, D)
    emit(LayoutEvent(1, 3, "loading embeddings"))
    fingerprint = _fingerprint(source)
    embeddings = np.load(source).astype(np.float32)
    if embeddings.ndim != 2 or len(embeddings) < 3:
        raise ValueError(
            f"a layout needs at least 3 embeddings (N, D), got {embeddings.shape}"
        )
    if stop is not None and stop.is_set():
        raise Cancelled("layout cancelled before the fit")

    # fit: layout (N, 2)
    emit(LayoutEvent(2, 3, f"fitting UMAP on {len(embeddings):,} points"))
    started = time.monotonic()
    layout = fit_umap(embeddings, seed)
    logger.info(
        "UMAP of %d points took %.1f s", len(layout), time.monotonic() - started
    )

    # save: write then rename, so a reader never sees half a file
    emit(LayoutEvent(3, 3, "saving the layout"))
    tmp = run_dir / (LAYOUT_FILE + ".tmp.npy")
    np.save(tmp, layout)
    os.replace(tmp, run_dir / LAYOUT_FILE)
    info = {"embeddings": fingerprint, "seed": seed, "points": len(layout)}
    (run_dir / LAYOUT_INFO_FILE).write_text(json.dumps(info))
    return layout


def fit_umap(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """UMAP (N, D) -> (N, 2) float32 with cosine distance, otherwise defaults."""
    import umap

    n = len(embeddings)
    # UMAP needs fewer neighbours than points; its spectral start fails on
    # a handful of points, so tiny pools start from random positions
    reducer = umap.UMAP(
        n_neighbors=min(15, n - 1),
        metric="cosine",
        random_state=seed,
        # a fixed seed makes UMAP single-threaded; say so, which also silences
        # its warning about it
        n_jobs=1,
        init="spectral" if n > 50 else "random",
    )
    return np.asarray(reducer.fit_transform(embeddings), dtype=np.float32)


def plot_sample(n: int, limit: int = PLOT_LIMIT, seed: int = 0) -> np.ndarray:
    """Indices of the points to plot: all of them, or a sorted random `limit`."""
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _fingerprint(path: Path) -> list[int] | None:
    if not path.exists():
        return None
    stat = path.stat()
    return [stat.st_mtime_ns, stat.st_size]
