"""Does bf16 autocast on the CPU train as well as fp32? Checked before it is a default.

Trains the default selection config on the built-in CIFAR-10 sample twice, in
fp32 and in bf16, and compares what selection depends on:

- the final contrastive loss;
- a 20-nearest-neighbour probe: test accuracy of the backbone's embeddings,
  voting with the labelled pool (a standard SSL check that needs no training);
- the rank correlation of the two runs' scores, and the overlap of their 30%
  coresets (two fp32 runs with different seeds give the noise floor).

    make bench-precision
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from coreset_core.augment import to_float
from coreset_core.config import SelectionConfig
from coreset_core.datasets import load_dataset
from coreset_core.runs import Run
from coreset_core.selection import select, subset_size
from coreset_core.training import Trainer, run_selection


def knn_accuracy(run_dir: Path, k: int = 20) -> float:
    """Test accuracy of a cosine k-NN vote over the pool's embeddings and labels."""
    run = Run(run_dir)
    dataset = load_dataset()
    pool = run.load_pool()
    trainer = Trainer(run.config, pool)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    trainer.load_state_dict(checkpoint["trainer"])

    # Embed the test split with the trained backbone, as Trainer.embeddings does.
    assert dataset.test is not None and dataset.test.labels is not None
    backbone = trainer.model.backbone.eval()
    with torch.no_grad():
        images = torch.from_numpy(dataset.test.images)
        test = backbone(to_float(images, trainer.mean, trainer.std)).float()
    train = torch.from_numpy(run.embeddings())
    similarity = F.normalize(test, dim=1) @ F.normalize(train, dim=1).T

    # neighbours: test x k indices into the pool; majority vote of their labels.
    neighbours = similarity.topk(k, dim=1).indices
    assert pool.labels is not None
    votes = torch.from_numpy(pool.labels)[neighbours]
    predicted = torch.mode(votes, dim=1).values.numpy()
    return float((predicted == dataset.test.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=SelectionConfig().epochs)
    args = parser.parse_args()

    out = Path(tempfile.mkdtemp(prefix="precision-"))
    variants = {"fp32": (0, "fp32"), "bf16": (0, "bf16"), "fp32 seed 1": (1, "fp32")}
    runs: dict[str, Path] = {}
    print(f"{'run':<14}{'minutes':>9}{'loss':>8}{'k-NN acc':>10}")
    for name, (seed, precision) in variants.items():
        config = SelectionConfig(
            epochs=args.epochs, seed=seed, precision=precision, device="cpu"
        )
        started = time.perf_counter()
        runs[name] = run_selection(config, out)
        minutes = (time.perf_counter() - started) / 60
        loss = Run(runs[name]).metrics()["loss"].iloc[-1]
        print(f"{name:<14}{minutes:>9.1f}{loss:>8.3f}{knn_accuracy(runs[name]):>10.3f}")

    scores = {
        name: Run(path).scores()["score"].to_numpy() for name, path in runs.items()
    }
    size = subset_size(len(scores["fp32"]), fraction=0.3)
    coreset = {name: set(select(s, size)) for name, s in scores.items()}
    for other in ("bf16", "fp32 seed 1"):
        rho = spearmanr(scores["fp32"], scores[other]).statistic
        overlap = len(coreset["fp32"] & coreset[other]) / size
        print(
            f"fp32 vs {other:<12} score rank correlation {rho:.3f}, "
            f"30% coreset overlap {overlap:.1%}"
        )
    print(f"runs kept in {out}")


if __name__ == "__main__":
    main()
