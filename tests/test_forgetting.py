"""Forgetting events counted from hand-made correctness sequences."""

from __future__ import annotations

import numpy as np
import pytest

from coreset_core import forgetting
from coreset_core.datasets import DatasetError, ImageDataset
from coreset_core.forgetting import (
    ForgettingTracker,
    count_forgetting,
    forgetting_counts,
    most_forgotten,
)
from coreset_core.supervised import TargetConfig


def track(sequences: list[list[bool]], order_seed: int = 0) -> ForgettingTracker:
    """Feed per-example correctness sequences, presented in shuffled batches."""
    n = len(sequences)
    tracker = ForgettingTracker(n)
    rng = np.random.default_rng(order_seed)
    for presentation in range(len(sequences[0])):
        # Two batches in a random order: position in a batch must not matter.
        for batch in np.array_split(rng.permutation(n), 2):
            correct = np.array([sequences[i][presentation] for i in batch])
            tracker.update(batch, correct)
    return tracker


SEQUENCES = [
    [False, False, False, False],  # never learned
    [False, True, True, True],  # learned once, never forgotten
    [True, False, True, False],  # forgotten twice
    [True, True, False, True],  # forgotten once
    [False, True, False, False],  # learned, forgotten once
]


def test_counts_from_hand_made_sequences() -> None:
    tracker = track(SEQUENCES)
    assert tracker.events.tolist() == [0, 0, 2, 1, 1]
    assert tracker.presentations.tolist() == [4] * 5
    # "max": never learned counts one more than the most forgotten learned example.
    assert tracker.counts("max").tolist() == [3, 0, 2, 1, 1]
    assert tracker.counts("zero").tolist() == [0, 0, 2, 1, 1]


def test_counts_do_not_depend_on_batch_order() -> None:
    for seed in range(3):
        assert track(SEQUENCES, order_seed=seed).events.tolist() == [0, 0, 2, 1, 1]


def test_never_learned_alone_and_bad_setting() -> None:
    counts = forgetting_counts(np.zeros(3, np.int64), np.zeros(3, bool))
    assert counts.tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="'always'"):
        forgetting_counts(np.zeros(3, np.int64), np.zeros(3, bool), "always")


def test_duplicate_index_in_a_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        ForgettingTracker(4).update(np.array([1, 1]), np.array([True, False]))


def test_most_forgotten_keeps_highest_counts_and_breaks_ties_by_seed() -> None:
    counts = np.array([0, 5, 1, 1, 1, 1, 3, 0])
    assert most_forgotten(counts, 2).tolist() == [1, 6]
    picks = {tuple(most_forgotten(counts, 3, seed=s)) for s in range(20)}
    assert all({1, 6} < set(p) and len(p) == 3 for p in picks)
    assert len(picks) > 1
    assert (
        most_forgotten(counts, 3, seed=4).tolist()
        == most_forgotten(counts, 3, seed=4).tolist()
    )


def tiny_dataset(labels: np.ndarray | None) -> ImageDataset:
    n = 6
    images = np.zeros((n, 3, 8, 8), np.uint8)
    return ImageDataset("tiny", images, labels, [str(i) for i in range(n)])


def test_counts_are_summed_over_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each seed replays canned correctness, one row per presentation:
    # seed 0 never learns example 1, seed 1 never learns example 5.
    canned = {
        0: [[1, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]],
        1: [[1, 1, 0, 0, 1, 0], [0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 0], [0] * 6],
    }

    def fake_train(images, labels, config, **kwargs):
        for row in canned[config.seed]:
            order = np.arange(len(images))[::-1]
            kwargs["on_predictions"](order, np.array(row, bool)[order])

    monkeypatch.setattr(forgetting, "train_target", fake_train)
    counts = count_forgetting(tiny_dataset(np.zeros(6, np.int64)), TargetConfig(),
                              seeds=(0, 1))  # fmt: skip
    # seed 0: events [1, 0, 0, 0, 0, 0]; example 1 never learned: 1 + 1 = 2.
    # seed 1: events [2, 1, 1, 1, 1, 0]; example 5 never learned: 2 + 1 = 3.
    assert counts.tolist() == [1 + 2, 2 + 1, 0 + 1, 0 + 1, 0 + 1, 0 + 3]


def test_unlabelled_dataset_is_an_error() -> None:
    with pytest.raises(DatasetError, match="no labels"):
        count_forgetting(tiny_dataset(None), TargetConfig(backbone="resnet20"))
