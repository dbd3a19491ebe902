"""Retraining evaluation: subset invariants, a tiny real run, resume after a stop."""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coreset_core.datasets import ImageDataset
from coreset_core.evaluation import (
    SUBSETS,
    EvaluationConfig,
    EvaluationEvent,
    list_evaluations,
    run_evaluation,
    subset_indices,
    summarise,
)
from coreset_core.runs import Run
from coreset_core.supervised import TargetConfig
from coreset_core.training import Cancelled

# One epoch of resnet20: seconds per training on a CPU.
TINY_TARGET = TargetConfig(backbone="resnet20", schedule="fast", epochs=1)


@pytest.fixture()
def run_dir(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A private copy of the shared finished run (300 real CIFAR-10 images).

    Its test split is cut to 200 images, a fifth of each class: measuring
    accuracy on all 1,000 would cost more than the one-epoch trainings.
    """
    load_pool = Run.load_pool

    def small_test_split(run: Run) -> ImageDataset:
        pool = load_pool(run)
        assert pool.test is not None
        return replace(pool, test=pool.test.subset(np.arange(0, 1000, 5)))

    monkeypatch.setattr(Run, "load_pool", small_test_split)
    return Path(shutil.copytree(finished_run, tmp_path / finished_run.name))


@pytest.mark.parametrize("n", [10, 301, 1000])
def test_subset_sizes_and_coreset_non_coreset_split(n: int) -> None:
    scores = np.random.default_rng(n).normal(size=n)
    scores[: n // 5] = 0.0  # ties must not make the two ends overlap
    counts = np.random.default_rng(1).integers(0, 4, size=n)
    for fraction in (0.3, 0.5, 0.7):
        size = int(np.floor(fraction * n + 0.5))
        for subset in ("coreset", "random", "forgetting", "non-coreset"):
            kept = subset_indices(subset, fraction, 0, scores, counts)
            assert len(kept) == len(np.unique(kept)) == size
        coreset = subset_indices("coreset", fraction, 0, scores)
        non_coreset = subset_indices("non-coreset", fraction, 0, scores)
        if 2 * size <= n:
            assert not np.intersect1d(coreset, non_coreset).size
        # The rest of the coreset is the non-coreset of the remaining size.
        rest = subset_indices("non-coreset", (n - size) / n, 0, scores)
        assert np.array_equal(np.union1d(coreset, rest), np.arange(n))
        assert scores[coreset].max() <= scores[rest].min()
    assert np.array_equal(subset_indices("full", 0.3, 0, scores), np.arange(n))


def test_subsets_are_deterministic_by_seed() -> None:
    scores = np.random.default_rng(0).normal(size=200)
    counts = np.random.default_rng(1).integers(0, 4, size=200)

    def pick(subset: str, seed: int) -> list[int]:
        return subset_indices(subset, 0.4, seed, scores, counts).tolist()

    assert pick("random", 3) == pick("random", 3) != pick("random", 4)
    for subset in ("coreset", "non-coreset", "forgetting"):
        assert pick(subset, 0) == pick(subset, 1)
    forgotten = subset_indices("forgetting", 0.4, 0, scores, counts)
    assert counts[forgotten].min() >= np.sort(counts)[::-1][79]


def test_config_is_validated_and_round_trips() -> None:
    with pytest.raises(ValueError, match="'best'"):
        EvaluationConfig(subsets=("best",))
    with pytest.raises(ValueError, match="1.5"):
        EvaluationConfig(fractions=(0.3, 1.5))
    with pytest.raises(ValueError, match="distinct"):
        EvaluationConfig(seeds=(0, 0))
    config = EvaluationConfig(fractions=(0.2,), seeds=(4,), target=TINY_TARGET)
    assert EvaluationConfig.from_dict(config.to_dict()) == config
    assert config.name == "resnet20-fast-1ep"
    assert EvaluationConfig().subsets == SUBSETS


def test_summary_means_stds_and_gap_to_random() -> None:
    results = pd.DataFrame({
        "subset": ["coreset", "coreset", "random", "random", "full"],
        "fraction": [0.5, 0.5, 0.5, 0.5, 1.0],
        "seed": [0, 1, 0, 1, 0],
        "accuracy": [0.6, 0.8, 0.5, 0.5, 0.9],
    })  # fmt: skip
    summary = summarise(results).set_index("subset")
    assert summary.loc["coreset", "accuracy_mean"] == pytest.approx(0.7)
    assert summary.loc["coreset", "accuracy_std"] == pytest.approx(
        np.std([0.6, 0.8], ddof=1)
    )
    assert summary.loc["coreset", "gap_to_random"] == pytest.approx(0.2)
    assert summary.loc["full", "accuracy_std"] == 0.0
    assert np.isnan(summary.loc["full", "gap_to_random"])


def test_evaluation_on_a_tiny_real_run(run_dir: Path) -> None:
    events: list[EvaluationEvent] = []
    config = EvaluationConfig(fractions=(0.5,), seeds=(0,), target=TINY_TARGET,
                              cross_test_fractions=(0.5,))  # fmt: skip
    out = run_evaluation(run_dir, config, on_event=events.append)
    assert out == run_dir / "evaluations" / "resnet20-fast-1ep"

    # One row per subset; the full training also counted forgetting events.
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["subset"]) == sorted(SUBSETS)
    assert results.set_index("subset").loc["coreset", "size"] == 150
    assert results["accuracy"].between(0, 1).all()
    assert (out / "forgetting_seed0.npy").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert {"accuracy_mean", "accuracy_std", "gap_to_random"} <= set(summary.columns)

    # The cross test: coreset against the rest of the pool, both ways.
    cross = pd.read_csv(out / "cross_test.csv")
    assert sorted(zip(cross["train_on"], cross["test_on"])) == [
        ("coreset", "non-coreset"), ("non-coreset", "coreset")]  # fmt: skip
    assert (cross["train_size"] + cross["test_size"] == 300).all()

    # Progress: every training reports its result, numbered 1..total.
    results_seen = [e for e in events if e.kind == "result"]
    assert [e.training for e in results_seen] == list(range(1, 8))
    assert all(0 < e.step <= e.steps for e in events)
    [evaluation] = list_evaluations(run_dir)
    assert evaluation.status()["state"] == "finished"
    assert len(evaluation.summary()) == len(summary)


def test_resume_after_a_stop_repeats_no_finished_training(run_dir: Path) -> None:
    config = EvaluationConfig(subsets=("coreset", "random"), fractions=(0.1, 0.2),
                              seeds=(0,), target=TINY_TARGET,
                              cross_test_fractions=())  # fmt: skip
    stop = threading.Event()

    def stop_after_two(event: EvaluationEvent) -> None:
        if event.kind == "result" and event.training == 2:
            stop.set()

    with pytest.raises(Cancelled):
        run_evaluation(run_dir, config, on_event=stop_after_two, stop=stop)
    out = run_dir / "evaluations" / config.name
    first = pd.read_csv(out / "results.csv")
    assert len(first) == 2
    [evaluation] = list_evaluations(run_dir)
    assert evaluation.status()["state"] == "cancelled"

    # The rerun trains only the two missing subsets and keeps the first rows.
    trained: list[str] = []
    run_evaluation(run_dir, config,
                   on_event=lambda e: trained.append(e.current.label)
                   if e.kind == "result" else None)  # fmt: skip
    results = pd.read_csv(out / "results.csv")
    assert len(trained) == 2 and len(results) == 4
    assert not results.duplicated(["subset", "fraction", "seed"]).any()
    pd.testing.assert_frame_equal(results.iloc[:2], first)


def test_a_different_target_setting_needs_another_name(run_dir: Path) -> None:
    # A stop set from the start: the folder is made, no training runs.
    stop = threading.Event()
    stop.set()
    config = EvaluationConfig(target=TINY_TARGET)
    with pytest.raises(Cancelled):
        run_evaluation(run_dir, config, stop=stop)
    lower_lr = replace(TINY_TARGET, lr=0.05)
    other = replace(config, target=lower_lr)
    with pytest.raises(ValueError, match="another name"):
        run_evaluation(run_dir, other, name=config.name, stop=stop)
    with pytest.raises(Cancelled):
        run_evaluation(run_dir, other, name="lower-lr", stop=stop)
    names = [evaluation.name for evaluation in list_evaluations(run_dir)]
    assert names == ["lower-lr", config.name]
