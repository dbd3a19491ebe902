"""Supervised training of the target model, the judge of a subset's worth.

The retraining protocol of Ju et al. 2022 (its experiments): train a classifier from
scratch on the kept examples only, then measure its accuracy on the test split.
Images stay uint8 on the device; each batch is normalised, cropped and flipped
there, as in augment.py.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from coreset_core.augment import random_crop_and_flip, to_float
from coreset_core.backbones import BACKBONES, Classifier, build_backbone
from coreset_core.config import PRECISIONS
from coreset_core.datasets import ImageDataset
from coreset_core.device import resolve_device, seed_everything, use_bf16
from coreset_core.training import Cancelled, NonFiniteLoss, ProgressEvent

log = logging.getLogger(__name__)

SCHEDULES = ("paper", "fast")

# The paper trains every target for 181 epochs; the fast schedule is for
# exploring on a CPU, where 15 epochs of resnet20 take minutes on a small pool.
PAPER_EPOCHS = 181
FAST_EPOCHS = 15

# How often (in steps) the running loss is checked for NaN or infinity. Each
# check waits for the device; every step would stall a GPU on small networks.
FINITE_CHECK_STEPS = 20

OnEvent = Callable[[ProgressEvent], None]
OnPredictions = Callable[[np.ndarray, np.ndarray], None]


def paper_lr(epoch: float, epochs: int = PAPER_EPOCHS, peak: float = 0.1) -> float:
    """The paper's step schedule: a warm-up epoch at peak / 10, then peak, / 10, / 100.

    With 181 epochs the three stages last 90, 45 and 45 epochs (Ju et al. 2022,
    experimental setup); other lengths keep the 2:1:1 split after the warm-up.
    """
    if epoch < 1:
        return peak / 10
    progress = (epoch - 1) / max(epochs - 1, 1)
    if progress < 0.5:
        return peak
    if progress < 0.75:
        return peak / 10
    return peak / 100


def fast_lr(epoch: float, epochs: int = FAST_EPOCHS, peak: float = 0.1) -> float:
    """One-cycle (Smith & Topin 2019): rise to peak over 20% of training, then to 0.

    Short runs reach a good accuracy sooner with one rise and a linear fall than
    with steps; the rise starts at peak / 10 so the first batches are not wasted.
    """
    warmup = 0.2 * epochs
    if epoch < warmup:
        return peak * (0.1 + 0.9 * epoch / warmup)
    return peak * max(0.0, (epochs - epoch) / (epochs - warmup))


@dataclass(frozen=True)
class TargetConfig:
    """How to train a target model on a subset.

    Defaults are those of Ju et al. 2022 (experimental setup): ResNet-18, SGD with
    momentum 0.9 and weight decay 5e-4, batch 128, peak lr 0.1, 181 epochs of the
    step schedule. epochs=None means the schedule's own length (181 for "paper",
    15 for "fast").
    """

    backbone: str = "resnet18"
    schedule: str = "paper"
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"backbone must be one of {BACKBONES}, got {self.backbone!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return PAPER_EPOCHS if self.schedule == "paper" else FAST_EPOCHS

    def lr_at(self, epoch: float) -> float:
        """The learning rate at a fractional epoch (epoch + step / steps)."""
        schedule = paper_lr if self.schedule == "paper" else fast_lr
        return schedule(epoch, self.resolved_epochs, self.lr)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TargetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown target settings: {', '.join(sorted(unknown))}")
        return cls(**values)


@dataclass
class TargetModel:
    """A trained classifier with what it needs to predict: stats, device, precision."""

    classifier: Classifier
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device
    bf16: bool
    history: list[dict[str, float]] = field(default_factory=list)

    @torch.inference_mode()
    def predict(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Predicted classes (N,) int64 of uint8 images (N, C, H, W)."""
        self.classifier.eval()
        predictions = []
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(self.device)
            x = to_float(batch, self.mean, self.std)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                logits = self.classifier(x)
            predictions.append(logits.argmax(1).cpu())
        if not predictions:
            return np.zeros(0, dtype=np.int64)
        return torch.cat(predictions).numpy().astype(np.int64)

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images (N, C, H, W) whose predicted class is their label."""
        if len(images) == 0:
            raise ValueError("accuracy needs at least one image, got none")
        return float((self.predict(images) == labels).mean())


def train_target(
    images: np.ndarray,
    labels: np.ndarray,
    config: TargetConfig,
    num_classes: int | None = None,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    on_event: OnEvent | None = None,
    stop: threading.Event | None = None,
    on_predictions: OnPredictions | None = None,
) -> TargetModel:
    """Train a classifier from scratch on uint8 images (N, C, H, W) and labels (N,).

    stats: the channel (mean, std) to normalise with; those of the images when None.
    on_predictions(indices, correct) is called after every batch with the example
    indices (into images) of the batch and whether each was classified correctly,
    which is what forgetting events are counted from. Raises Cancelled when stop is
    set (checked between batches) and NonFiniteLoss when the loss diverges.
    """
    _check_inputs(images, labels)
    num_classes = num_classes or int(labels.max()) + 1
    device = resolve_device(config.device)
    bf16 = use_bf16(config.precision, device)
    seed_everything(config.seed)
    mean, std = stats if stats is not None else _channel_stats(images)

    # The classifier in channels_last, faster for convolutions on GPU and CPU alike.
    backbone = build_backbone(config.backbone, in_channels=images.shape[1])
    classifier = Classifier(backbone, num_classes)
    classifier = classifier.to(device).to(memory_format=torch.channels_last)
    model = TargetModel(
        classifier,
        torch.as_tensor(mean, dtype=torch.float32, device=device),
        torch.as_tensor(std, dtype=torch.float32, device=device),
        device,
        bf16,
    )
    optimizer = torch.optim.SGD(
        classifier.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )

    # The whole training set moves to the device once, as uint8.
    data = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    targets = torch.from_numpy(labels.astype(np.int64)).to(device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    order = np.random.default_rng(config.seed)
    epochs = config.resolved_epochs
    # Equal-sized batches covering every example each epoch: no tiny last batch
    # for batch norm, and each example is presented exactly once per epoch.
    steps = math.ceil(len(images) / config.batch_size)

    start = time.perf_counter()
    for epoch in range(epochs):
        batches = np.array_split(order.permutation(len(images)), steps)
        step_state = _EpochState(device)
        classifier.train()
        for step, batch in enumerate(batches):
            if stop is not None and stop.is_set():
                raise Cancelled("target training stopped on request")
            lr = config.lr_at(epoch + step / steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            correct = _step(
                model, optimizer, data, targets, batch, generator, step_state
            )
            if on_predictions is not None:
                on_predictions(batch, correct.cpu().numpy())
            if (step + 1) % FINITE_CHECK_STEPS == 0:
                step_state.check_finite(epoch + 1, step + 1)
            if on_event is not None:
                on_event(ProgressEvent("batch", epoch + 1, epochs, step + 1, steps))

        # Epoch metrics: mean loss and accuracy over this epoch's presentations.
        step_state.check_finite(epoch + 1, steps)
        metrics = step_state.metrics(len(images), lr, time.perf_counter() - start)
        model.history.append({"epoch": float(epoch + 1), **metrics})
        log.debug("target epoch %d/%d: %s", epoch + 1, epochs, metrics)
        if on_event is not None:
            on_event(ProgressEvent("epoch", epoch + 1, epochs, steps, steps, metrics))
    return model


class _EpochState:
    """Running loss and correct count of one epoch, kept on the device."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)

    def check_finite(self, epoch: int, step: int) -> None:
        loss = float(self.loss)
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"target training loss became {loss} by epoch {epoch}, step {step}; "
                "lower the learning rate or use fp32 precision"
            )

    def metrics(self, n: int, lr: float, elapsed_s: float) -> dict[str, float]:
        return {
            "loss": float(self.loss) / n,
            "train_accuracy": float(self.correct) / n,
            "lr": lr,
            "elapsed_s": elapsed_s,
        }


def _step(
    model: TargetModel,
    optimizer: torch.optim.Optimizer,
    data: torch.Tensor,
    targets: torch.Tensor,
    batch: np.ndarray,
    generator: torch.Generator,
    state: _EpochState,
) -> torch.Tensor:
    """One SGD step on the examples at batch; returns whether each was correct (B,)."""
    index = torch.from_numpy(batch).to(model.device)
    y = targets[index]

    # x: B x C x H x W, normalised, cropped and flipped on the device.
    x = random_crop_and_flip(to_float(data[index], model.mean, model.std), generator)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(model.device.type, torch.bfloat16, enabled=model.bf16):
        logits = model.classifier(x)
    loss = F.cross_entropy(logits.float(), y)

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

    # Correctness at this presentation, from the logits the step trained on.
    correct = logits.detach().argmax(1) == y
    state.loss += loss.detach() * len(batch)
    state.correct += correct.sum()
    return correct


def _check_inputs(images: np.ndarray, labels: np.ndarray | None) -> None:
    if labels is None:
        raise ValueError("target training needs labels; these images have none")
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    if len(images) < 2:
        raise ValueError(f"target training needs at least 2 images, got {len(images)}")


def _channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std, float32 (C,), of the images as a dataset."""
    ids = [str(i) for i in range(len(images))]
    return ImageDataset("training images", images, None, ids).channel_stats()
