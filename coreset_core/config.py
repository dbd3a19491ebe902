"""The selection config: every choice of a run, validated once, saved with it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from coreset_core.backbones import BACKBONES

METHODS = ("simclr", "moco")
PRECISIONS = ("auto", "fp32", "bf16")

# Temperatures of the original papers: SimCLR's CIFAR-10 runs use 0.5,
# MoCo v2 uses 0.2.
DEFAULT_TEMPERATURE = {"simclr": 0.5, "moco": 0.2}


@dataclass(frozen=True)
class SelectionConfig:
    """How to train the contrastive model whose similarities score the pool.

    Defaults are sized for the built-in CIFAR-10 sample on a 2-core CPU (a few
    minutes); the paper's setting is backbone="resnet18" with a few hundred epochs.
    """

    data: str = "builtin"
    data_root: str | None = None
    download: bool = False
    pool_size: int | None = None
    method: str = "simclr"
    backbone: str = "resnet20"
    epochs: int = 15
    batch_size: int = 256
    # SGD with momentum and cosine decay, lr scaled linearly with the batch
    # (0.06 per 256, the MoCo CIFAR-10 recipe).
    lr: float = 0.06
    weight_decay: float = 5e-4
    temperature: float | None = None
    projection_dim: int = 128
    momentum: float = 0.99
    queue_size: int = 4096
    fraction: float = 0.3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"backbone must be one of {BACKBONES}, got {self.backbone!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(
                "batch_size must be at least 2 (views need negatives), "
                f"got {self.batch_size}"
            )
        check_fraction(self.fraction)
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be positive, got {self.queue_size}")
        if self.pool_size is not None and self.pool_size < 2:
            raise ValueError(f"pool_size must be at least 2, got {self.pool_size}")

    @property
    def resolved_temperature(self) -> float:
        return self.temperature or DEFAULT_TEMPERATURE[self.method]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SelectionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown selection settings: {', '.join(sorted(unknown))}"
            )
        return cls(**values)


def check_fraction(fraction: float) -> None:
    """Raise ValueError unless 0 < fraction <= 1."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
