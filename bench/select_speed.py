"""Selection speed: batched on-device augmentation against a per-image DataLoader.

Three pipelines train the same SimCLR model (resnet20, batch 256) on the same
built-in CIFAR-10 images, measured side by side and interleaved so that noise on
a shared machine hits them alike:

- reference: per-image torchvision transforms on PIL images in a DataLoader
  with 2 workers, fp32, as common SSL examples do;
- coreset-studio: the Trainer as `select` runs it, bookkeeping on;
- the same with similarity bookkeeping off, to price the bookkeeping.

Run with the allocator settings the CLI and the Makefile use:
    make bench
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from coreset_core.backbones import build_backbone
from coreset_core.config import SelectionConfig
from coreset_core.contrastive import SimCLR
from coreset_core.datasets import load_dataset
from coreset_core.training import Trainer


class TwoViews(Dataset):
    """A PIL image per example, turned into two views by torchvision transforms."""

    def __init__(self, images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
        self.images = images.transpose(0, 2, 3, 1)
        jitter = transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(32, scale=(0.2, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.RandomApply([jitter], p=0.8),
                transforms.RandomGrayscale(p=0.2),
                transforms.ToTensor(),
                transforms.Normalize(mean.tolist(), std.tolist()),
            ]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(self.images[i])
        return self.transform(image), self.transform(image)


def reference_epoch(
    loader: DataLoader, model: SimCLR, optimizer: torch.optim.Optimizer
) -> float:
    """Images per second of one pass of the per-image pipeline."""
    model.train()
    started = time.perf_counter()
    seen = 0
    for views_a, views_b in loader:
        loss, _ = model(views_a, views_b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(views_a)
    return seen / (time.perf_counter() - started)


def trainer_epoch(trainer: Trainer, epoch: int, record: bool) -> float:
    started = time.perf_counter()
    trainer.train_epoch(epoch, record=record)
    return len(trainer.images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    args = parser.parse_args()

    pool = load_dataset().subset(np.arange(args.images))
    mean, std = pool.channel_stats()
    config = SelectionConfig(
        epochs=100, batch_size=256, precision=args.precision, device="cpu"
    )
    trainer = Trainer(config, pool)

    torch.manual_seed(0)
    model = SimCLR(build_backbone("resnet20"), 128, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9)
    loader = DataLoader(
        TwoViews(pool.images, mean, std),
        batch_size=256,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
    )

    # Warm-up: first passes pay for thread pools, workers and kernel selection.
    reference_epoch(loader, model, optimizer)
    trainer_epoch(trainer, 0, True)

    results: dict[str, list[float]] = {
        "reference": [],
        "record on": [],
        "record off": [],
    }
    for r in range(args.repeats):
        results["reference"].append(reference_epoch(loader, model, optimizer))
        results["record on"].append(trainer_epoch(trainer, 2 * r + 1, True))
        results["record off"].append(trainer_epoch(trainer, 2 * r + 2, False))

    rate = {name: statistics.median(values) for name, values in results.items()}
    print(
        f"SimCLR resnet20, batch 256, {args.images} images, "
        f"{torch.get_num_threads()} threads, precision {args.precision} "
        f"(bf16: {trainer.bf16}), median of {args.repeats}"
    )
    print(f"{'pipeline':<28}{'images/s':>10}")
    print(f"{'reference (per-image)':<28}{rate['reference']:>10.0f}")
    print(f"{'coreset-studio':<28}{rate['record on']:>10.0f}")
    print(f"{'  bookkeeping off':<28}{rate['record off']:>10.0f}")
    print(f"speed-up over reference: {rate['record on'] / rate['reference']:.2f}x")
    cost = 1 - rate["record on"] / rate["record off"]
    print(f"bookkeeping cost: {cost:.1%}")


if __name__ == "__main__":
    main()
