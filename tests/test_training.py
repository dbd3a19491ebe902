import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from coreset_core import runs
from coreset_core.config import SelectionConfig
from coreset_core.datasets import ImageDataset
from coreset_core.training import (
    Cancelled,
    NonFiniteLoss,
    Trainer,
    resume_selection,
    run_selection,
)
from tests.conftest import TINY_RUN


class BrightnessModel(nn.Module):
    """Reports each example's mean pixel as its similarity.

    Flat images keep their value under crops and flips, so the value an example
    reports tells which example it is, wherever it sat in its batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, views_a, views_b):
        similarity = views_a.mean(dim=(1, 2, 3))
        loss = (self.weight * similarity).sum()
        return loss, similarity.detach()


def flat_images(n: int) -> ImageDataset:
    values = np.arange(n, dtype=np.uint8) * 3
    images = np.broadcast_to(values[:, None, None, None], (n, 1, 8, 8)).copy()
    return ImageDataset("flat", images, None, [str(i) for i in range(n)])


@pytest.mark.parametrize("n, batch_size", [(37, 8), (50, 7), (9, 9), (5, 2)])
def test_similarity_is_stored_by_example_index(n, batch_size):
    pool = flat_images(n)
    config = SelectionConfig(epochs=3, batch_size=batch_size, backbone="resnet20")
    trainer = Trainer(config, pool)
    trainer.model = BrightnessModel()
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.0)

    # What each example must report: its own normalised brightness.
    expected = (
        pool.images[:, 0, 0, 0] / 255 - trainer.mean.item()
    ) / trainer.std.item()
    for epoch in range(3):
        _, similarity = trainer.train_epoch(epoch)
        np.testing.assert_allclose(similarity.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_batches_are_shuffled_and_cover_every_example_once():
    pool = flat_images(37)
    trainer = Trainer(SelectionConfig(epochs=2, batch_size=8), pool)
    trainer.model = BrightnessModel()
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.0)
    seen = []
    original_step = trainer._step

    def spy(indices):
        seen.append(indices.clone())
        return original_step(indices)

    trainer._step = spy
    trainer.train_epoch(0)
    sizes = [len(s) for s in seen]
    assert sorted(torch.cat(seen).tolist()) == list(range(37))
    assert max(sizes) - min(sizes) <= 1 and len(sizes) == 5
    assert torch.cat(seen).tolist() != list(range(37))


def test_same_seed_gives_the_same_scores_on_the_cpu(tmp_path):
    config = SelectionConfig(epochs=1, pool_size=96, batch_size=32)
    first = runs.Run(run_selection(config, tmp_path / "a")).scores()
    second = runs.Run(run_selection(config, tmp_path / "b")).scores()
    np.testing.assert_array_equal(first["score"], second["score"])


@pytest.mark.parametrize("method", ["simclr", "moco"])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, method):
    config = SelectionConfig(
        epochs=3, pool_size=64, batch_size=32, method=method, queue_size=128
    )
    straight = runs.Run(run_selection(config, tmp_path / "straight"))

    # Stop as soon as the first epoch has been saved.
    stop = threading.Event()

    def on_event(event):
        if event.kind == "epoch" and event.epoch == 1:
            stop.set()

    with pytest.raises(Cancelled):
        run_selection(config, tmp_path / "cut", on_event=on_event, stop=stop)
    cut_dir = next((tmp_path / "cut").iterdir())
    assert runs.Run(cut_dir).status()["state"] == "cancelled"
    assert not (cut_dir / "scores.csv").exists()

    resumed = runs.Run(resume_selection(cut_dir))
    assert resumed.status()["state"] == "finished"
    assert len(resumed.metrics()) == 3
    np.testing.assert_array_equal(resumed.similarity(), straight.similarity())


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, monkeypatch):
    def nan_forward(self, views_a, views_b):
        projections = self.project(views_a)
        return projections.sum() * float("nan"), projections[:, 0].detach()

    monkeypatch.setattr("coreset_core.contrastive.SimCLR.forward", nan_forward)
    with pytest.raises(NonFiniteLoss, match="non-finite|nan"):
        run_selection(SelectionConfig(epochs=2, pool_size=64, batch_size=32), tmp_path)

    run_dir = next(tmp_path.iterdir())
    status = runs.Run(run_dir).status()
    assert status["state"] == "failed" and "NonFiniteLoss" in status["error"]
    assert not (run_dir / "scores.csv").exists()


def test_finished_run_folder_is_complete(finished_run: Path):
    run = runs.Run(finished_run)
    assert run.status()["state"] == "finished"
    n = TINY_RUN.pool_size
    assert run.similarity().shape == (2, n) and run.similarity().dtype == np.float16
    assert run.embeddings().shape == (n, 64)
    assert list(run.metrics()["epoch"]) == [1, 2]
    for name in (
        "checkpoint.pt",
        "config.json",
        "scores.csv",
        "selection_lowest_0.30.csv",
    ):
        assert (finished_run / name).exists(), name

    scores = run.scores()
    assert list(scores.columns) == ["index", "id", "label", "score", "rank"]
    np.testing.assert_allclose(scores["score"], run.similarity().astype(float).sum(0))
    assert run.info["code_version"] and run.info["config"]["seed"] == 0


def test_a_run_in_training_cannot_be_resumed_twice(tmp_path):
    config = SelectionConfig(epochs=2, pool_size=64, batch_size=32)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_selection(config, tmp_path, stop=stop)
    run_dir = next(tmp_path.iterdir())

    # While one trainer holds the run, a second is refused; after, it resumes.
    with runs.training_lock(run_dir):
        with pytest.raises(runs.RunBusy, match="another process or job"):
            resume_selection(run_dir)
    assert runs.Run(resume_selection(run_dir)).status()["state"] == "finished"
