"""Coreset quality: the paper's retraining comparison, scaled to a 2-core CPU.

Ju et al. 2022 (experiments) train SimCLR on the whole training set, keep the
lowest-scored fraction, train a target model on it from scratch and compare test
accuracy with a random subset of the same size and with forgetting events
(Toneva et al. 2019). This script does the same at a CPU's scale:

- CIFAR-10 (the shared JPEG copy) and MNIST (standing in for QMNIST, whose
  images are not available offline; its labels agree with QMNIST's train split);
- a fixed class-balanced pool of 10,000 training images per dataset;
- SimCLR selection with resnet20, subsets of 30% and 50%;
- resnet20 targets with the fast one-cycle schedule, 3 seeds each;
- accuracy on each dataset's 10,000 test images.

Runs and evaluations land in --out and are reused: a rerun after an
interruption picks up where it stopped. Results card and exact command:
docs/RESULTS.md.

    python -m bench.quality                                   # about an hour
    python -m bench.quality --pool-size 500 --selection-epochs 1 --epochs 1 \\
        --seeds 1                                             # smoke test
    python -m bench.quality --paper                           # full size, GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from coreset_core.config import SelectionConfig
from coreset_core.evaluation import (
    EvaluationConfig,
    run_evaluation,
    subset_indices,
    summarise,
)
from coreset_core.runs import Run
from coreset_core.supervised import TargetConfig
from coreset_core.training import resume_selection, run_selection

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "cifar10": ROOT.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz",
    "mnist": ROOT.parent / "shared" / "datasets" / "mnist.npz",
}
SUBSETS = ("coreset", "random", "forgetting", "full")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS)
    )
    parser.add_argument("--pool-size", type=int, default=10_000)
    parser.add_argument("--selection-epochs", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6, help="target epochs")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--precision",
        default="bf16",
        help="bf16 (default: about 1.5x faster on this CPU) or fp32",
    )
    parser.add_argument("--device", default="auto")
    # On a busy 2-core machine two threads per process stall each other: one
    # thread trained resnet20 at 384 images/s where two managed 31.
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-quality")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="also write the table here, as markdown",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="train nothing: print the tables from the results stored so far",
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="the paper's full-size protocol (a GPU's work): whole "
        "training sets, resnet18, the 181-epoch schedule, "
        "fractions 0.3-0.7",
    )
    return parser.parse_args()


def configs(
    args: argparse.Namespace, data: Path
) -> tuple[SelectionConfig, EvaluationConfig]:
    """The selection and evaluation settings for one dataset."""
    if args.paper:
        selection = SelectionConfig(
            data=str(data),
            backbone="resnet18",
            epochs=args.selection_epochs,
            seed=0,
            device=args.device,
            precision="auto",
        )
        target = TargetConfig(backbone="resnet18", schedule="paper", device=args.device)
        fractions: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    else:
        selection = SelectionConfig(
            data=str(data),
            pool_size=args.pool_size,
            backbone="resnet20",
            epochs=args.selection_epochs,
            seed=0,
            device=args.device,
            precision=args.precision,
        )
        target = TargetConfig(
            backbone="resnet20",
            schedule="fast",
            epochs=args.epochs,
            device=args.device,
            precision=args.precision,
        )
        fractions = tuple(args.fractions)
    evaluation = EvaluationConfig(
        subsets=SUBSETS,
        fractions=fractions,
        seeds=tuple(range(args.seeds)),
        target=target,
        cross_test_fractions=(),
    )
    return selection, evaluation


def selection_run(config: SelectionConfig, out: Path) -> Path:
    """A finished run of this config: reused, resumed, or trained now."""
    run = stored_run(config, out)
    if run is None:
        return run_selection(config, out)
    if run.status()["state"] == "finished":
        print(f"reusing selection run {run.path}")
        return run.path
    print(f"resuming selection run {run.path}")
    return resume_selection(run.path)


def stored_run(config: SelectionConfig, out: Path) -> Run | None:
    """The run of this config stored under out, if there is one."""
    for path in sorted(out.glob("*/config.json")):
        if json.loads(path.read_text())["config"] == config.to_dict():
            return Run(path.parent)
    return None


def table(name: str, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per fraction: mean ± std accuracy (%) of each subset, gaps to random."""
    cell = summary.set_index(["subset", "fraction"])

    def accuracy(subset: str, fraction: float) -> str:
        if (subset, fraction) not in cell.index:
            return ""
        mean, std = cell.loc[(subset, fraction), ["accuracy_mean", "accuracy_std"]]
        return f"{100 * mean:.2f} ± {100 * std:.2f}"

    def gap(subset: str, fraction: float) -> str:
        if (subset, fraction) not in cell.index:
            return ""
        value = cell.loc[(subset, fraction), "gap_to_random"]
        return "" if np.isnan(value) else f"{100 * value:+.2f}"

    rows = []
    for fraction in sorted(f for f in summary["fraction"].unique() if f < 1):
        trainings = cell.xs(fraction, level="fraction")["trainings"]
        rows.append({
            "dataset": name, "fraction": f"{fraction:.0%}",
            "seeds": f"{trainings.min()}-{trainings.max()}"
            if trainings.min() != trainings.max() else str(trainings.min()),
            "coreset": accuracy("coreset", fraction),
            "random": accuracy("random", fraction),
            "forgetting": accuracy("forgetting", fraction),
            "coreset − random": gap("coreset", fraction),
            "forgetting − random": gap("forgetting", fraction),
            "full pool": accuracy("full", 1.0),
        })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    args = parse_args()
    if args.paper and args.selection_epochs == 6:
        args.selection_epochs = 200
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    tables, balances = [], []
    for name in args.datasets:
        start = time.perf_counter()
        selection, evaluation = configs(args, DATASETS[name])
        if args.report:
            run = stored_run(selection, args.out / name)
            out = run.path / "evaluations" / evaluation.name if run else args.out
            if run is None or not (out / "results.csv").exists():
                print(f"{name}: no results stored yet")
                continue
            run_dir = run.path
        else:
            run_dir = selection_run(selection, args.out / name)
            selected = time.perf_counter()
            out = run_evaluation(run_dir, evaluation)
            print(
                f"\n{name}: selection {selected - start:.0f} s, "
                f"evaluation {time.perf_counter() - selected:.0f} s, in {out}"
            )
        summary = summarise(pd.read_csv(out / "results.csv"))
        print(summary.to_string(index=False))
        tables.append(table(name, summary))
        balances.append(balance(name, run_dir, evaluation))

    result = pd.concat(tables, ignore_index=True)
    shares = pd.concat(balances, ignore_index=True)
    print("\nTest accuracy (%), mean ± std over seeds:\n")
    print(markdown(result))
    print("\nClass balance of the subsets (share of the smallest and largest class):\n")
    print(markdown(shares))
    if args.markdown is not None:
        args.markdown.write_text(markdown(result) + "\n\n" + markdown(shares) + "\n")


def balance(name: str, run_dir: Path, evaluation: EvaluationConfig) -> pd.DataFrame:
    """How far each subset is from the pool's equal class shares."""
    scores = Run(run_dir).scores().sort_values("index")
    labels = scores["label"].to_numpy(dtype=int)
    out = run_dir / "evaluations" / evaluation.name
    paths = [out / f"forgetting_seed{s}.npy" for s in evaluation.seeds]
    counts = sum(np.load(p) for p in paths) if all(p.exists() for p in paths) else None
    subsets = (
        ("coreset", "random") if counts is None else ("coreset", "forgetting", "random")
    )
    rows = []
    for fraction in evaluation.fractions:
        for subset in subsets:
            kept = subset_indices(
                subset, fraction, 0, scores["score"].to_numpy(), counts
            )
            share = np.bincount(labels[kept], minlength=labels.max() + 1) / len(kept)
            rows.append({
                "dataset": name, "fraction": f"{fraction:.0%}", "subset": subset,
                "smallest class": f"{100 * share.min():.1f}%",
                "largest class": f"{100 * share.max():.1f}%",
            })  # fmt: skip
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table, blanks for missing cells."""
    cells = frame.fillna("").astype(str)
    lines = [
        "| " + " | ".join(cells.columns) + " |",
        "| " + " | ".join("---" for _ in cells.columns) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
