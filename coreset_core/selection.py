"""From per-epoch similarities to scores, and from scores to a subset.

The paper's rule (Ju et al. 2022, section III-B): an example's score is the sum
of its similarity over the epochs of contrastive training; the coreset is the
examples with the lowest scores, those whose two views the model found hardest
to pull together.
"""

from __future__ import annotations

import math

import numpy as np

from coreset_core.config import check_fraction

STRATEGIES = ("lowest", "highest", "random", "offset", "balanced")


def scores_from_similarity(
    similarity: np.ndarray, window: tuple[int, int] | None = None
) -> np.ndarray:
    """Sum similarity (epochs, N) over all epochs, or over [start, stop) of window."""
    if similarity.ndim != 2 or similarity.shape[0] == 0:
        raise ValueError(
            f"similarity must be (epochs, N) with epochs > 0, got {similarity.shape}"
        )
    if window is not None:
        start, stop = window
        if not 0 <= start < stop <= similarity.shape[0]:
            raise ValueError(
                f"window {window} must satisfy "
                f"0 <= start < stop <= {similarity.shape[0]}"
            )
        similarity = similarity[start:stop]
    return similarity.astype(np.float64).sum(axis=0)


def subset_size(n: int, fraction: float | None = None, count: int | None = None) -> int:
    """The number of examples to keep out of n, from a fraction or a count."""
    if (fraction is None) == (count is None):
        raise ValueError("give exactly one of fraction and count")
    if count is not None:
        if not 0 < count <= n:
            raise ValueError(f"count must be in [1, {n}], got {count}")
        return count
    assert fraction is not None
    check_fraction(fraction)
    return max(1, min(n, math.floor(fraction * n + 0.5)))


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Indices from lowest to highest score; ties broken by index, so it is stable."""
    return np.lexsort((np.arange(len(scores)), scores))


def select(
    scores: np.ndarray,
    size: int,
    strategy: str = "lowest",
    labels: np.ndarray | None = None,
    offset: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of the kept examples.

    lowest: the coreset (the paper's rule). highest: its complement's end, the
    easiest examples. random: a seeded uniform subset. offset: the lowest after
    skipping the `offset` hardest, which may be label noise or outliers.
    balanced: the lowest within each class, in proportion to the class sizes.
    """
    n = len(scores)
    if not 0 < size <= n:
        raise ValueError(f"size must be in [1, {n}], got {size}")
    order = rank_order(scores)
    if strategy == "lowest":
        kept = order[:size]
    elif strategy == "highest":
        kept = order[n - size :]
    elif strategy == "random":
        kept = np.random.default_rng(seed).choice(n, size, replace=False)
    elif strategy == "offset":
        if not 0 <= offset <= n - size:
            raise ValueError(f"offset must be in [0, {n - size}], got {offset}")
        kept = order[offset : offset + size]
    elif strategy == "balanced":
        kept = _balanced(order, size, labels)
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return np.sort(kept)


def _balanced(order: np.ndarray, size: int, labels: np.ndarray | None) -> np.ndarray:
    """The lowest-scored examples of each class, quotas by largest remainder."""
    if labels is None:
        raise ValueError("strategy 'balanced' needs labels; this dataset has none")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[c] += 1

    # Walk the global order once, keeping each class's lowest up to its quota.
    ranked_labels = labels[order]
    kept = [order[ranked_labels == c][:q] for c, q in zip(classes, quota)]
    return np.concatenate(kept)
