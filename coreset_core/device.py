"""Where training runs, and how it is made reproducible."""

from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """The CUDA device when present for "auto"; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for "auto": on CUDA, and on CPUs with native bf16 support.

    On this project's 2-core CPU bf16 trains resnet20 1.7x faster than fp32, to
    the same loss; its scores differ from fp32's less than two fp32 seeds differ
    from each other (rank correlation 0.91 against 0.60), and a k-NN probe of its
    embeddings lands within the seed spread (bench/precision_check.py). CPUs
    without native bf16 would emulate it slowly, so they keep fp32.
    """
    if precision == "auto":
        if device.type == "cuda":
            return True
        return device.type == "cpu" and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    return precision == "bf16"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
