"""The target-model trainer: schedules, settings, determinism, clear failures."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from coreset_core.datasets import ImageDataset, load_dataset
from coreset_core.supervised import (
    PAPER_EPOCHS,
    TargetConfig,
    fast_lr,
    paper_lr,
    train_target,
)
from coreset_core.training import Cancelled, NonFiniteLoss

TINY = TargetConfig(backbone="resnet20", schedule="fast", epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def cifar() -> ImageDataset:
    """64 real CIFAR-10 images from the built-in sample, all ten classes."""
    dataset = load_dataset("builtin")
    return dataset.subset(np.arange(0, len(dataset), len(dataset) // 64)[:64])


def test_paper_schedule_stages() -> None:
    # 1 warm-up epoch at 0.01, then 90 at 0.1, 45 at 0.01, 45 at 0.001.
    assert PAPER_EPOCHS == 181
    lrs = [paper_lr(epoch) for epoch in range(PAPER_EPOCHS)]
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[1:91] == [0.1] * 90
    assert lrs[91:136] == [pytest.approx(0.01)] * 45
    assert lrs[136:] == [pytest.approx(0.001)] * 45


def test_fast_schedule_rises_then_falls_to_zero() -> None:
    lrs = [fast_lr(e / 10, epochs=10) for e in range(101)]
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.1) and peak == 20
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] == 0.0
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :]))


@pytest.mark.parametrize(
    ("setting", "bad"),
    [("schedule", "cosine"), ("backbone", "vgg"), ("epochs", 0), ("lr", -1.0),
     ("batch_size", 1), ("momentum", 1.0), ("precision", "fp8")],
)  # fmt: skip
def test_bad_setting_is_named(setting: str, bad: object) -> None:
    with pytest.raises(ValueError, match=str(bad)):
        TargetConfig(**{setting: bad})


def test_defaults_are_the_papers() -> None:
    config = TargetConfig()
    assert (config.backbone, config.batch_size, config.lr) == ("resnet18", 128, 0.1)
    assert (config.momentum, config.weight_decay) == (0.9, 5e-4)
    assert config.resolved_epochs == 181
    assert TargetConfig.from_dict(config.to_dict()) == config


def test_training_is_deterministic_by_seed_on_the_cpu(cifar: ImageDataset) -> None:
    def run(seed: int) -> tuple[list[dict[str, float]], np.ndarray]:
        config = TargetConfig(**{**TINY.to_dict(), "seed": seed, "device": "cpu"})
        model = train_target(cifar.images, cifar.labels, config, num_classes=10)
        history = [{k: v for k, v in h.items() if k != "elapsed_s"}
                   for h in model.history]  # fmt: skip
        return history, model.predict(cifar.images)

    first, again, other = run(0), run(0), run(1)
    assert first[0] == again[0]
    assert np.array_equal(first[1], again[1])
    assert first[0] != other[0]


def test_every_example_is_presented_once_per_epoch(cifar: ImageDataset) -> None:
    seen = np.zeros(len(cifar), np.int64)

    def count(indices: np.ndarray, correct: np.ndarray) -> None:
        assert indices.shape == correct.shape and correct.dtype == bool
        seen[indices] += 1

    config = TargetConfig(**{**TINY.to_dict(), "epochs": 2, "batch_size": 24})
    model = train_target(cifar.images, cifar.labels, config, on_predictions=count)
    assert seen.tolist() == [2] * len(cifar)
    assert len(model.history) == 2
    accuracy = model.accuracy(cifar.test.images[:64], cifar.test.labels[:64])
    assert 0.0 <= accuracy <= 1.0


def test_non_finite_loss_stops_with_a_clear_error(cifar: ImageDataset) -> None:
    config = TargetConfig(**{**TINY.to_dict(), "lr": 1e12, "batch_size": 16})
    with pytest.raises(NonFiniteLoss, match="loss became"):
        train_target(cifar.images, cifar.labels, config)


def test_stop_cancels_between_batches(cifar: ImageDataset) -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        train_target(cifar.images, cifar.labels, TINY, stop=stop)


def test_unlabelled_images_are_refused(cifar: ImageDataset) -> None:
    with pytest.raises(ValueError, match="needs labels"):
        train_target(cifar.images, None, TINY)
