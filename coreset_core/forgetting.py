"""Forgetting events (Toneva et al., ICLR 2019), the supervised baseline of retraining.

An example suffers a forgetting event when it is classified correctly at one
presentation in a training mini-batch and incorrectly at its next one. Examples
forgotten often are the hard, informative ones; the forgetting baseline keeps
the most forgotten. Unlike the contrastive score, it needs labels.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from coreset_core.datasets import DatasetError, ImageDataset
from coreset_core.supervised import OnEvent, TargetConfig, train_target

# What an example that was never classified correctly counts as. "max": more
# than any learned example (Toneva et al. treat such examples as forgotten
# infinitely often). "zero": its observed count, which is zero.
NEVER_LEARNED = ("max", "zero")


class ForgettingTracker:
    """Counts forgetting events per example from mini-batch correctness.

    Presentations are recorded by example index, never by position in the batch,
    so any order of examples, and any number of presentations, count correctly.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.previous = np.zeros(size, dtype=bool)
        self.learned = np.zeros(size, dtype=bool)
        self.events = np.zeros(size, dtype=np.int64)
        self.presentations = np.zeros(size, dtype=np.int64)

    def update(self, indices: np.ndarray, correct: np.ndarray) -> None:
        """Record a presentation of the examples at indices (B,); correct (B,) bool."""
        indices = np.asarray(indices, dtype=np.int64)
        correct = np.asarray(correct, dtype=bool)
        if indices.shape != correct.shape:
            raise ValueError(
                f"indices {indices.shape} and correct {correct.shape} must match"
            )
        if len(np.unique(indices)) != len(indices):
            raise ValueError("an example was presented twice in one batch")

        # An event: correct at the last presentation, incorrect at this one. The
        # first presentation has no last one; previous starts False for that.
        self.events[indices] += self.previous[indices] & ~correct
        self.previous[indices] = correct
        self.learned[indices] |= correct
        self.presentations[indices] += 1

    def counts(self, never_learned: str = "max") -> np.ndarray:
        """Forgetting counts (N,) int64; see forgetting_counts for never_learned."""
        return forgetting_counts(self.events, self.learned, never_learned)


def forgetting_counts(
    events: np.ndarray, learned: np.ndarray, never_learned: str = "max"
) -> np.ndarray:
    """Per-example counts (N,) from event counts (N,) and whether each was learned.

    never_learned="max" gives never-learned examples one more than the most
    forgotten learned example: Toneva et al.'s infinity, kept finite so counts
    stay integers that sum over seeds. "zero" keeps their observed count of 0.
    """
    if never_learned not in NEVER_LEARNED:
        raise ValueError(
            f"never_learned must be one of {NEVER_LEARNED}, got {never_learned!r}"
        )
    counts = np.asarray(events, dtype=np.int64).copy()
    if never_learned == "max":
        counts[~learned] = counts[learned].max(initial=0) + 1
    return counts


def most_forgotten(counts: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the size most forgotten examples; ties broken by seed.

    Counts are small integers, so ties are many; a seeded random order among
    equal counts keeps the subset from favouring low indices (or one class).
    """
    n = len(counts)
    if not 0 < size <= n:
        raise ValueError(f"size must be in [1, {n}], got {size}")
    tie_break = np.random.default_rng(seed).permutation(n)
    order = np.lexsort((tie_break, -np.asarray(counts)))
    return np.sort(order[:size])


def require_labels(dataset: ImageDataset) -> np.ndarray:
    """The dataset's labels; a DatasetError when it has none."""
    if dataset.labels is None:
        raise DatasetError(
            f"{dataset.name} has no labels: forgetting events count "
            "misclassifications, so they need a labelled dataset"
        )
    return dataset.labels


def count_forgetting(
    dataset: ImageDataset,
    config: TargetConfig,
    seeds: tuple[int, ...] = (0,),
    never_learned: str = "max",
    on_event: OnEvent | None = None,
    stop: threading.Event | None = None,
) -> np.ndarray:
    """Train on the whole dataset once per seed; counts (N,) summed over the seeds."""
    labels = require_labels(dataset)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got none")
    total = np.zeros(len(dataset), dtype=np.int64)
    for seed in seeds:
        tracker = ForgettingTracker(len(dataset))
        train_target(
            dataset.images,
            labels,
            dataclasses.replace(config, seed=seed),
            num_classes=_num_classes(dataset),
            on_event=on_event,
            stop=stop,
            on_predictions=tracker.update,
        )
        total += tracker.counts(never_learned)
    return total


def _num_classes(dataset: ImageDataset) -> int:
    if dataset.classes is not None:
        return len(dataset.classes)
    return int(require_labels(dataset).max()) + 1
