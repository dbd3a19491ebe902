"""Retraining evaluation: what a subset is worth to a target model trained on it.

The protocol of Ju et al. 2022 (experiments): for each subset kind and fraction,
train a target model from scratch on the kept pool examples only and measure its
accuracy on the test split, over several seeds. Subset kinds:

- coreset: the lowest contrastive scores (the paper's rule);
- random: a seeded uniform subset, the baseline every method must beat;
- forgetting: the most forgotten examples (Toneva et al. 2019), a supervised
  baseline counted during the full-pool trainings;
- non-coreset: the highest scores, the coreset's opposite end;
- full: the whole pool, the ceiling.

An evaluation lives in the run folder it evaluates, <run>/evaluations/<name>/,
and resumes: trainings already in results.csv are not repeated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coreset_core.config import check_fraction
from coreset_core.datasets import DatasetError, ImageDataset
from coreset_core.forgetting import (
    NEVER_LEARNED,
    ForgettingTracker,
    most_forgotten,
    require_labels,
)
from coreset_core.runs import Run, code_version, write_json
from coreset_core.selection import select, subset_size
from coreset_core.supervised import TargetConfig, TargetModel, train_target
from coreset_core.training import Cancelled, ProgressEvent

log = logging.getLogger(__name__)

SUBSETS = ("coreset", "random", "forgetting", "non-coreset", "full")
CROSS_SUBSETS = ("coreset", "non-coreset")

# seconds: the training alone; accuracy: on the test split.
RESULT_COLUMNS = [
    "subset", "fraction", "seed", "size", "accuracy", "train_accuracy", "loss",
    "epochs", "seconds", "backbone", "selection_backbone", "schedule", "device",
    "finished_at",
]  # fmt: skip
CROSS_COLUMNS = [
    "fraction", "seed", "train_on", "test_on", "train_size", "test_size",
    "accuracy", "test_accuracy", "seconds", "finished_at",
]  # fmt: skip


@dataclass(frozen=True)
class EvaluationConfig:
    """Which subsets to retrain on, at which fractions, with how many seeds.

    Fractions 30-70% and three seeds follow the paper's figures (Ju et al. 2022,
    experiments). cross_test_fractions: fractions at which to also train on the
    coreset and test on the rest of the pool, and the reverse (empty for none);
    there the non-coreset is that whole rest, the highest-scored N - size.
    never_learned: how forgetting counts treat examples never learned (see
    forgetting.forgetting_counts).
    """

    subsets: tuple[str, ...] = SUBSETS
    fractions: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    seeds: tuple[int, ...] = (0, 1, 2)
    target: TargetConfig = TargetConfig()
    cross_test_fractions: tuple[float, ...] = (0.5,)
    never_learned: str = "max"

    def __post_init__(self) -> None:
        for subset in self.subsets:
            if subset not in SUBSETS:
                raise ValueError(f"subsets must be among {SUBSETS}, got {subset!r}")
        if not self.subsets and not self.cross_test_fractions:
            raise ValueError("nothing to evaluate: no subsets and no cross test")
        if not self.fractions and set(self.subsets) - {"full"}:
            raise ValueError("fractions must name at least one fraction, got none")
        for fraction in (*self.fractions, *self.cross_test_fractions):
            check_fraction(fraction)
        for fraction in self.cross_test_fractions:
            if fraction == 1:
                raise ValueError("a cross test fraction must leave a rest, got 1.0")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed, got none")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if self.never_learned not in NEVER_LEARNED:
            raise ValueError(
                f"never_learned must be one of {NEVER_LEARNED}, "
                f"got {self.never_learned!r}"
            )

    @property
    def name(self) -> str:
        """The default folder name, one per target setting: resnet18-paper-181ep."""
        target = self.target
        return f"{target.backbone}-{target.schedule}-{target.resolved_epochs}ep"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationConfig:
        values = dict(values)
        target = TargetConfig.from_dict(values.pop("target", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"unknown evaluation settings: {', '.join(sorted(unknown))}"
            )
        tuples = {k: tuple(v) for k, v in values.items() if isinstance(v, list)}
        return cls(**{**values, **tuples, "target": target})


@dataclass(frozen=True)
class Training:
    """One planned training: a subset kind, a fraction (1.0 for full) and a seed.

    cross: for a cross-test training, the subset it is tested on ("" otherwise).
    """

    subset: str
    fraction: float
    seed: int
    cross: str = ""

    @property
    def label(self) -> str:
        tested = f", tested on the {self.cross}" if self.cross else ""
        return f"{self.subset} {self.fraction:.0%} seed {self.seed}{tested}"


@dataclass(frozen=True)
class EvaluationEvent:
    """Progress of an evaluation: within its current training, and overall.

    kind: "batch" (a step of the current training), "target_epoch" (one of its
    epochs ended; metrics hold loss, train_accuracy, lr) or "result" (a training
    finished; metrics hold its row). training counts from 1 up to trainings, the
    number planned in this call; step and steps count within the training.
    """

    kind: str
    training: int
    trainings: int
    current: Training
    step: int
    steps: int
    metrics: dict[str, Any]

    # A job's progress reads epoch, epochs, step and steps: here the trainings
    # play the epochs, so progress is (training - 1 + step / steps) / trainings.
    @property
    def epoch(self) -> int:
        return self.training

    @property
    def epochs(self) -> int:
        return self.trainings

    @property
    def message(self) -> str:
        return f"training {self.training}/{self.trainings}: {self.current.label}"


OnEvent = Callable[[EvaluationEvent], None]


def evaluation_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "evaluations" / name


def run_evaluation(
    run_dir: Path,
    config: EvaluationConfig,
    on_event: OnEvent | None = None,
    stop: threading.Event | None = None,
    name: str | None = None,
) -> Path:
    """Train targets on the run's subsets; return <run>/evaluations/<name>/.

    Resumes an earlier evaluation of the same name: its finished trainings are
    kept. Raises Cancelled when stop is set, after recording state "cancelled".
    """
    run = Run(Path(run_dir))
    pool, scores = _load_run(run)
    out = evaluation_dir(run.path, name or config.name)
    _start(out, config, run)
    plan = _plan(config, out)
    try:
        _Evaluation(run, pool, scores, config, out, plan, on_event, stop).run()
    except Cancelled:
        _write_status(out, "cancelled", None)
        raise
    except KeyboardInterrupt:
        _write_status(out, "interrupted", None)
        raise
    except Exception as error:
        _write_status(out, "failed", f"{type(error).__name__}: {error}")
        raise
    _write_status(out, "finished", None)
    return out


class _Evaluation:
    """The trainings of one call, with the data and files they share."""

    def __init__(
        self,
        run: Run,
        pool: ImageDataset,
        scores: np.ndarray,
        config: EvaluationConfig,
        out: Path,
        plan: list[Training],
        on_event: OnEvent | None,
        stop: threading.Event | None,
    ) -> None:
        self.run_config = run.config
        self.pool = pool
        self.labels = require_labels(pool)
        self.scores = scores
        self.config = config
        self.out = out
        self.plan = plan
        self.on_event = on_event
        self.stop = stop
        self.stats = pool.channel_stats()
        self.num_classes = (
            len(pool.classes) if pool.classes else int(self.labels.max()) + 1
        )

    def run(self) -> None:
        for number, training in enumerate(self.plan, start=1):
            if self.stop is not None and self.stop.is_set():
                raise Cancelled("evaluation stopped on request")
            log.info("training %d/%d: %s", number, len(self.plan), training.label)
            row = self._do(training, number)
            if self.on_event is not None and row is not None:
                self.on_event(
                    EvaluationEvent(
                        "result", number, len(self.plan), training, 1, 1, row
                    )
                )

    def _do(self, training: Training, number: int) -> dict[str, Any] | None:
        """Run one planned training and store its row; the row, if one was made."""
        if training.cross:
            cross = self._cross_test(training, number)
            _append_row(self.out / "cross_test.csv", cross, CROSS_COLUMNS)
            return cross
        row = self._train_subset(training, number)
        if row is not None:
            _append_row(self.out / "results.csv", row, RESULT_COLUMNS)
            write_summary(self.out)
        return row

    def _train_subset(self, training: Training, number: int) -> dict[str, Any] | None:
        """Train on one subset; its results row, or None when only counts were due."""
        indices = self.indices(training)
        counting = training.subset == "full"
        tracker = ForgettingTracker(len(indices)) if counting else None
        start = time.perf_counter()
        model = self._train(training, number, indices, tracker)
        seconds = time.perf_counter() - start

        # Forgetting counts are saved before the row, so a row implies its counts.
        if tracker is not None:
            counts = tracker.counts(self.config.never_learned)
            np.save(_counts_path(self.out, training.seed), counts)
            if _has_row(self.out / "results.csv", training):
                return None
        test = self.pool.test
        assert test is not None and test.labels is not None
        last = model.history[-1]
        return {
            "subset": training.subset,
            "fraction": training.fraction,
            "seed": training.seed,
            "size": len(indices),
            "accuracy": model.accuracy(test.images, test.labels),
            "train_accuracy": last["train_accuracy"],
            "loss": last["loss"],
            "epochs": len(model.history),
            "seconds": round(seconds, 2),
            "backbone": self.config.target.backbone,
            "selection_backbone": self.run_config.backbone,
            "schedule": self.config.target.schedule,
            "device": str(model.device),
            "finished_at": time.time(),
        }

    def _cross_test(self, training: Training, number: int) -> dict[str, Any]:
        """Train on the coreset (or the rest) and test on the other side of the pool."""
        coreset = self.indices(Training("coreset", training.fraction, training.seed))
        rest = np.setdiff1d(np.arange(len(self.pool)), coreset)
        train_on, test_on = (
            (coreset, rest) if training.subset == "coreset" else (rest, coreset)
        )
        start = time.perf_counter()
        model = self._train(training, number, train_on, None)
        test = self.pool.test
        assert test is not None and test.labels is not None
        return {
            "fraction": training.fraction,
            "seed": training.seed,
            "train_on": training.subset,
            "test_on": training.cross,
            "train_size": len(train_on),
            "test_size": len(test_on),
            "accuracy": model.accuracy(self.pool.images[test_on], self.labels[test_on]),
            "test_accuracy": model.accuracy(test.images, test.labels),
            "seconds": round(time.perf_counter() - start, 2),
            "finished_at": time.time(),
        }

    def _train(
        self,
        training: Training,
        number: int,
        indices: np.ndarray,
        tracker: ForgettingTracker | None,
    ) -> TargetModel:
        def forward(event: ProgressEvent) -> None:
            if self.on_event is not None:
                self.on_event(
                    EvaluationEvent(
                        "batch" if event.kind == "batch" else "target_epoch",
                        number,
                        len(self.plan),
                        training,
                        (event.epoch - 1) * event.steps + event.step,
                        event.epochs * event.steps,
                        dict(event.metrics),
                    )  # fmt: skip
                )

        return train_target(
            self.pool.images[indices],
            self.labels[indices],
            dataclasses.replace(self.config.target, seed=training.seed),
            num_classes=self.num_classes,
            stats=self.stats,
            on_event=forward,
            stop=self.stop,
            on_predictions=tracker.update if tracker is not None else None,
        )

    def indices(self, training: Training) -> np.ndarray:
        """Sorted pool indices of a planned training's subset."""
        return subset_indices(
            training.subset,
            training.fraction,
            training.seed,
            self.scores,
            self.forgetting_counts if training.subset == "forgetting" else None,
        )

    @property
    def forgetting_counts(self) -> np.ndarray:
        """Counts (N,) summed over the evaluation's seeds, from the full trainings."""
        paths = [_counts_path(self.out, seed) for seed in self.config.seeds]
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise RuntimeError(f"forgetting counts missing: {', '.join(missing)}")
        counts: np.ndarray = sum(np.load(p) for p in paths)  # type: ignore[assignment]
        return counts


def subset_indices(
    subset: str,
    fraction: float,
    seed: int,
    scores: np.ndarray,
    forgetting_counts: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted indices into the pool of one subset kind at a fraction.

    The coreset and the non-coreset come from one ranking of scores (ties broken
    by index), so they never overlap while their sizes add up to at most N, and
    the rest of a coreset of size k is exactly the non-coreset of size N - k.
    random depends on seed; coreset and non-coreset do not.
    """
    n = len(scores)
    if subset == "full":
        return np.arange(n)
    size = subset_size(n, fraction=fraction)
    if subset == "coreset":
        return select(scores, size, "lowest")
    if subset == "non-coreset":
        return select(scores, size, "highest")
    if subset == "random":
        return select(scores, size, "random", seed=seed)
    if subset == "forgetting":
        if forgetting_counts is None:
            raise ValueError("the forgetting subset needs forgetting counts")
        return most_forgotten(forgetting_counts, size, seed=0)
    raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


def _load_run(run: Run) -> tuple[ImageDataset, np.ndarray]:
    """The run's pool (labelled, with a test split) and its scores (N,)."""
    state = run.status().get("state")
    if state != "finished":
        raise ValueError(f"run {run.name} is {state}; evaluate a finished run")
    pool = run.load_pool()
    if pool.labels is None:
        raise DatasetError(
            f"{pool.name} has no labels: retraining measures accuracy, so it needs them"
        )
    if pool.test is None or pool.test.labels is None:
        raise DatasetError(
            f"{pool.name} has no labelled test split to measure accuracy on"
        )
    table = run.scores().sort_values("index")
    if not np.array_equal(table["index"].to_numpy(), np.arange(len(pool))):
        raise ValueError(f"run {run.name}: scores.csv does not cover the pool")
    return pool, table["score"].to_numpy(dtype=np.float64)


def _start(out: Path, config: EvaluationConfig, run: Run) -> None:
    """Create (or reopen) the evaluation folder; refuse a different target setting."""
    path = out / "config.json"
    if path.exists():
        earlier = EvaluationConfig.from_dict(json.loads(path.read_text())["config"])
        if (earlier.target, earlier.never_learned) != (
            config.target,
            config.never_learned,
        ):
            raise ValueError(
                f"{out} holds an evaluation with target {earlier.target} "
                f"(never_learned={earlier.never_learned!r}); "
                "give this setting another name"
            )
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, {
        "config": config.to_dict(),
        "run": run.name,
        "code_version": code_version(),
        "started": time.time(),
    })  # fmt: skip
    _write_status(out, "running", None)


def _plan(config: EvaluationConfig, out: Path) -> list[Training]:
    """The trainings still to do, full ones first (forgetting counts come from them)."""
    done = _done_keys(out / "results.csv", ["subset", "fraction", "seed"])
    crossed = _done_keys(out / "cross_test.csv", ["train_on", "fraction", "seed"])
    plan: list[Training] = []

    # Full-pool trainings: rows when "full" is asked for, counts for "forgetting".
    wants_counts = "forgetting" in config.subsets
    for seed in config.seeds:
        full = Training("full", 1.0, seed)
        row_due = "full" in config.subsets and _key(full) not in done
        counts_due = wants_counts and not _counts_path(out, seed).exists()
        if row_due or counts_due:
            plan.append(full)

    # Seeds outermost, so each seed's whole picture arrives early.
    for seed in config.seeds:
        for fraction in config.fractions:
            for subset in config.subsets:
                training = Training(subset, fraction, seed)
                if subset != "full" and _key(training) not in done:
                    plan.append(training)
    for fraction in config.cross_test_fractions:
        for seed in config.seeds:
            for train_on, test_on in (CROSS_SUBSETS, CROSS_SUBSETS[::-1]):
                if (train_on, round(fraction, 6), seed) not in crossed:
                    plan.append(Training(train_on, fraction, seed, cross=test_on))
    return plan


def _key(training: Training) -> tuple[str, float, int]:
    return (training.subset, round(training.fraction, 6), training.seed)


def _done_keys(path: Path, columns: list[str]) -> set[tuple[Any, ...]]:
    if not path.exists():
        return set()
    table = pd.read_csv(path)
    return {
        (str(a), round(float(b), 6), int(c))
        for a, b, c in table[columns].itertuples(index=False)
    }


def _has_row(path: Path, training: Training) -> bool:
    return _key(training) in _done_keys(path, ["subset", "fraction", "seed"])


def _counts_path(out: Path, seed: int) -> Path:
    return out / f"forgetting_seed{seed}.npy"


def _append_row(path: Path, row: dict[str, Any], columns: list[str]) -> None:
    """Add a row, rewriting through a temporary file so readers see whole tables."""
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=columns)
    table = pd.concat([table, pd.DataFrame([row], columns=columns)], ignore_index=True)
    _write_csv(path, table)


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    partial = path.with_name(f".{path.name}.partial")
    table.to_csv(partial, index=False)
    os.replace(partial, path)


def _write_status(out: Path, state: str, error: str | None) -> None:
    write_json(out / "status.json", {"state": state, "error": error,
                                     "updated": time.time()})  # fmt: skip


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of accuracy per subset and fraction, and the gap to random.

    std is the sample standard deviation over seeds, 0 for a single training.
    gap_to_random: mean accuracy minus random's at the same fraction (NaN where
    random was not trained).
    """
    grouped = results.groupby(["subset", "fraction"])["accuracy"]
    summary = pd.DataFrame({
        "trainings": grouped.count(),
        "accuracy_mean": grouped.mean(),
        "accuracy_std": grouped.std().fillna(0.0),
    }).reset_index()  # fmt: skip
    random = summary[summary["subset"] == "random"].set_index("fraction")
    baseline = summary["fraction"].map(random["accuracy_mean"])
    summary["gap_to_random"] = summary["accuracy_mean"] - baseline

    # Rows by fraction, then subsets in the order of SUBSETS.
    summary["order"] = summary["subset"].map({s: i for i, s in enumerate(SUBSETS)})
    summary = summary.sort_values(["fraction", "order"]).drop(columns="order")
    return summary.reset_index(drop=True)


def write_summary(out: Path) -> Path:
    """Rewrite summary.csv from results.csv."""
    path = out / "summary.csv"
    _write_csv(path, summarise(pd.read_csv(out / "results.csv")))
    return path


@dataclass(frozen=True)
class Evaluation:
    """Read access to one evaluation folder, for pages and reports."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> EvaluationConfig:
        info = json.loads((self.path / "config.json").read_text())
        return EvaluationConfig.from_dict(info["config"])

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads((self.path / "status.json").read_text())
        return status

    def results(self) -> pd.DataFrame:
        return _read_table(self.path / "results.csv", RESULT_COLUMNS)

    def summary(self) -> pd.DataFrame:
        results = self.results()
        if results.empty:
            return pd.DataFrame(
                columns=["subset", "fraction", "trainings", "accuracy_mean",
                         "accuracy_std", "gap_to_random"]
            )  # fmt: skip
        return summarise(results)

    def cross_test(self) -> pd.DataFrame:
        return _read_table(self.path / "cross_test.csv", CROSS_COLUMNS)


def list_evaluations(run_dir: Path) -> list[Evaluation]:
    """The evaluations stored in a run folder, by name."""
    root = Path(run_dir) / "evaluations"
    if not root.exists():
        return []
    found = sorted(p for p in root.iterdir() if (p / "config.json").exists())
    return [Evaluation(p) for p in found]


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=columns)
    return pd.read_csv(path)


def planned_trainings(
    run_dir: Path, config: EvaluationConfig, name: str | None = None
) -> int:
    """How many trainings run_evaluation would still do, for a UI's estimate."""
    return len(_plan(config, evaluation_dir(Path(run_dir), name or config.name)))
