"""Contrastive training that records every example's similarity in every epoch.

The steps of a selection run (Ju et al. 2022, section III):

1. Load the dataset and fix the pool of examples to score.
2. Train SimCLR or MoCo on two random views of each pool image.
3. In every epoch, store each example's similarity (the cosine between the
   projections of its two views) at its own index in an (epochs, N) array.
4. Sum the similarities over epochs into scores; the lowest form the coreset.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coreset_core import runs
from coreset_core.augment import random_views, to_float
from coreset_core.backbones import build_backbone
from coreset_core.config import SelectionConfig
from coreset_core.contrastive import ContrastiveModel, build_model
from coreset_core.datasets import ImageDataset, load_dataset, select_pool
from coreset_core.device import resolve_device, seed_everything, use_bf16
from coreset_core.selection import scores_from_similarity

log = logging.getLogger(__name__)

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class Cancelled(Exception):
    """Training was stopped on request; the run can resume from its last epoch."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training cannot go on from there."""


@dataclass(frozen=True)
class ProgressEvent:
    """What a running job reports: after each batch, with metrics after each epoch."""

    kind: str
    epoch: int
    epochs: int
    step: int
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)


OnEvent = Callable[[ProgressEvent], None]


class Trainer:
    """One contrastive model, its optimiser and random streams, over one pool."""

    def __init__(self, config: SelectionConfig, pool: ImageDataset) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device)
        seed_everything(config.seed)

        # channels_last speeds convolutions up on both CPU (oneDNN) and CUDA.
        backbone = build_backbone(config.backbone, pool.channels)
        self.model: ContrastiveModel = build_model(
            config.method,
            backbone,
            config.projection_dim,
            config.resolved_temperature,
            config.momentum,
            config.queue_size,
        ).to(self.device)
        self.model.to(memory_format=torch.channels_last)

        # Linear lr scaling with the batch (Goyal et al. 2017), cosine decay per step.
        self.base_lr = config.lr * config.batch_size / 256
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=self.base_lr,
            momentum=0.9,
            weight_decay=config.weight_decay,
        )

        self.images = torch.from_numpy(pool.images)
        mean, std = pool.channel_stats()
        self.mean = torch.from_numpy(mean).to(self.device)
        self.std = torch.from_numpy(std).to(self.device)
        self.steps_per_epoch = math.ceil(len(pool) / config.batch_size)

        # Separate streams: the batch order on the CPU, the views on the device.
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.view_generator = torch.Generator(self.device).manual_seed(config.seed + 1)

    def lr_at(self, step: int) -> float:
        total = self.config.epochs * self.steps_per_epoch
        return self.base_lr * 0.5 * (1 + math.cos(math.pi * step / total))

    def train_epoch(
        self,
        epoch: int,
        record: bool = True,
        on_event: OnEvent | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[float, torch.Tensor]:
        """Train one epoch; return the mean loss and the similarity (N,) by example.

        Batches are near-equal slices of a random permutation, so no batch is
        tiny and every example is seen exactly once.
        """
        n = len(self.images)
        self.model.train()
        permutation = torch.randperm(n, generator=self.order_generator)
        batches = torch.tensor_split(permutation, self.steps_per_epoch)

        # similarity: N, NaN until an example's batch has been seen.
        similarity = torch.full((n,), float("nan"), device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        for step, indices in enumerate(batches):
            if stop is not None and stop.is_set():
                raise Cancelled(f"stopped during epoch {epoch + 1}")
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(epoch * self.steps_per_epoch + step)

            loss, batch_similarity = self._step(indices)
            loss_sum += loss.detach() * len(indices)
            if record:
                # Written by example index, never by position in the batch.
                similarity[indices.to(self.device)] = batch_similarity.float()
            if on_event is not None:
                on_event(
                    ProgressEvent(
                        "batch", epoch + 1, self.config.epochs, step + 1, len(batches)
                    )
                )

        mean_loss = float(loss_sum) / n
        if not math.isfinite(mean_loss):
            raise NonFiniteLoss(
                f"the loss became {mean_loss} in epoch {epoch + 1}; try a lower lr "
                f"(now {self.config.lr}) or a higher temperature"
            )
        if record and bool(similarity.isnan().any()):
            raise RuntimeError("similarity bookkeeping missed examples in an epoch")
        return mean_loss, similarity

    def _step(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.images[indices].to(self.device, non_blocking=True)
        views_a = random_views(images, self.mean, self.std, self.view_generator)
        views_b = random_views(images, self.mean, self.std, self.view_generator)
        views_a = views_a.contiguous(memory_format=torch.channels_last)
        views_b = views_b.contiguous(memory_format=torch.channels_last)

        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss, similarity = self.model(views_a, views_b)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, similarity

    @torch.no_grad()
    def embeddings(self, batch_size: int = 512) -> np.ndarray:
        """Backbone output (N, D) for the un-augmented images."""
        self.model.eval()
        chunks = []
        for start in range(0, len(self.images), batch_size):
            images = self.images[start : start + batch_size].to(self.device)
            x = to_float(images, self.mean, self.std)
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=self.bf16
            ):
                chunks.append(self.model.backbone(x).float().cpu())
        return torch.cat(chunks).numpy()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "order_generator": self.order_generator.get_state(),
            "view_generator": self.view_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.order_generator.set_state(state["order_generator"])
        self.view_generator.set_state(state["view_generator"])


def run_selection(
    config: SelectionConfig,
    out_dir: Path,
    on_event: OnEvent | None = None,
    stop: threading.Event | None = None,
    run_dir: Path | None = None,
) -> Path:
    """Train, record similarities, score and select; return the run folder.

    Everything that can be checked before training (the device, the data) is
    checked before the run folder is made, so bad input leaves no folder behind.
    """
    resolve_device(config.device)
    dataset = load_dataset(config.data, config.data_root, config.download)
    pool_indices = select_pool(dataset, config.pool_size, config.seed)
    if len(pool_indices) < 2:
        raise ValueError(
            f"{config.data}: a pool needs at least 2 images, found {len(pool_indices)}"
        )

    if run_dir is None:
        run_dir = runs.create_run_dir(out_dir, config, dataset.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json(
        run_dir / "config.json",
        {
            "config": config.to_dict(),
            "code_version": runs.code_version(),
            "dataset": dataset.name,
            "pool_size": len(pool_indices),
            "labelled": dataset.labels is not None,
            "started": time.time(),
        },
    )
    np.save(run_dir / "pool.npy", pool_indices)
    with runs.training_lock(run_dir):
        runs.write_status(run_dir, "running", 0, config.epochs)
        return _train(
            run_dir, config, dataset.subset(pool_indices), None, on_event, stop
        )


def resume_selection(
    run_dir: Path, on_event: OnEvent | None = None, stop: threading.Event | None = None
) -> Path:
    """Continue an interrupted or cancelled run from its last finished epoch."""
    run = runs.Run(run_dir)
    with runs.training_lock(run.path):
        if run.status()["state"] == "finished":
            raise ValueError(f"{run_dir}: the run has already finished")
        checkpoint_path = run.path / "checkpoint.pt"
        checkpoint = None
        if checkpoint_path.exists():
            checkpoint = torch.load(
                checkpoint_path, map_location="cpu", weights_only=False
            )
        return _train(run.path, run.config, run.load_pool(), checkpoint, on_event, stop)


def _train(
    run_dir: Path,
    config: SelectionConfig,
    pool: ImageDataset,
    checkpoint: dict[str, Any] | None,
    on_event: OnEvent | None,
    stop: threading.Event | None,
) -> Path:
    trainer = Trainer(config, pool)
    similarity = np.full((config.epochs, len(pool)), np.nan, dtype=np.float16)
    start_epoch, elapsed = 0, 0.0
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint["trainer"])
        start_epoch, elapsed = checkpoint["epoch"], checkpoint["elapsed_s"]
        similarity[:start_epoch] = checkpoint["similarity"]
    _truncate_metrics(run_dir, start_epoch)
    log.info(
        "training %s on %d images, epochs %d-%d, device %s",
        config.method,
        len(pool),
        start_epoch + 1,
        config.epochs,
        trainer.device,
    )

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            loss, epoch_similarity = trainer.train_epoch(epoch, True, on_event, stop)
            similarity[epoch] = epoch_similarity.cpu().numpy()
            seconds = time.perf_counter() - started
            elapsed += seconds
            metrics = _epoch_metrics(
                epoch, loss, trainer, similarity[epoch], seconds, elapsed
            )
            _finish_epoch(run_dir, trainer, similarity, epoch, elapsed, metrics)
            if on_event is not None:
                on_event(
                    ProgressEvent(
                        "epoch",
                        epoch + 1,
                        config.epochs,
                        trainer.steps_per_epoch,
                        trainer.steps_per_epoch,
                        metrics,
                    )
                )

        # The run's outputs: embeddings for the map, scores and the coreset.
        np.save(run_dir / "embeddings.npy", trainer.embeddings())
        runs.write_scores(run_dir, pool, scores_from_similarity(similarity))
        runs.write_status(run_dir, "finished", config.epochs, config.epochs)
        runs.export_selection(run_dir, fraction=config.fraction)
    except Cancelled:
        runs.write_status(run_dir, "cancelled", epoch, config.epochs)
        raise
    except KeyboardInterrupt:
        runs.write_status(run_dir, "interrupted", epoch, config.epochs)
        raise
    except BaseException as exc:
        runs.write_status(
            run_dir, "failed", epoch, config.epochs, f"{type(exc).__name__}: {exc}"
        )
        raise
    return run_dir


def _epoch_metrics(
    epoch: int,
    loss: float,
    trainer: Trainer,
    similarity: np.ndarray,
    seconds: float,
    elapsed: float,
) -> dict[str, float]:
    values = similarity.astype(np.float32)
    metrics = {
        "epoch": epoch + 1,
        "loss": loss,
        "lr": trainer.lr_at(epoch * trainer.steps_per_epoch),
        "similarity_mean": float(values.mean()),
    }
    for q, value in zip(QUANTILES, np.quantile(values, QUANTILES)):
        metrics[f"similarity_q{round(q * 100)}"] = float(value)
    metrics["images_per_s"] = len(values) / seconds
    metrics["elapsed_s"] = elapsed
    return metrics


def _finish_epoch(
    run_dir: Path,
    trainer: Trainer,
    similarity: np.ndarray,
    epoch: int,
    elapsed: float,
    metrics: dict[str, float],
) -> None:
    """Persist an epoch: checkpoint first, so that anything after it can be redone."""
    done = epoch + 1
    partial = run_dir / ".checkpoint.pt.partial"
    torch.save(
        {
            "trainer": trainer.state_dict(),
            "epoch": done,
            "elapsed_s": elapsed,
            "similarity": similarity[:done],
        },
        partial,
    )
    partial.replace(run_dir / "checkpoint.pt")

    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(metrics) + "\n")
    partial_sim = run_dir / ".similarity.npy.partial"
    with open(partial_sim, "wb") as handle:
        np.save(handle, similarity[:done])
    partial_sim.replace(run_dir / "similarity.npy")
    runs.write_status(run_dir, "running", done, trainer.config.epochs)


def _truncate_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop metric lines of epochs after the checkpoint, which will be trained again."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line)["epoch"] <= epochs_done]
    path.write_text("".join(line + "\n" for line in kept))
