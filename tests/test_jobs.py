"""The job manager: progress, FIFO order, cancel, failures, restart and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from coreset_core.catalog import CATALOG_FILE, Catalog
from coreset_core.config import SelectionConfig
from coreset_core.jobs import JobManager, OnEvent
from coreset_core.layout import LAYOUT_FILE, load_layout, plot_sample
from coreset_core.runs import Run
from coreset_core.training import ProgressEvent
from tests.conftest import ROOT

# 128 real images, two epochs: seconds on two CPU cores
TINY = dict(pool_size=128, epochs=2, batch_size=64, device="cpu")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[JobManager]:
    jobs = JobManager(tmp_path / "runs")
    yield jobs
    jobs.close()


def wait_until(check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)


def test_selection_job_finishes_with_progress(manager: JobManager) -> None:
    id = manager.submit_selection(SelectionConfig(**TINY))
    status = manager.wait(id, timeout=120)

    assert status.state == "finished", status.error
    assert (status.epoch, status.epochs, status.progress) == (2, 2, 1.0)
    assert {"loss", "similarity_q50"} <= set(status.metrics)
    run = Run(manager.runs_dir / id)
    assert run.status()["state"] == "finished"
    assert run.similarity().shape == (2, 128)
    record = manager.catalog.get(id)
    assert record is not None and (record.state, record.epoch) == ("finished", 2)


def test_progress_and_time_left_while_running(manager: JobManager) -> None:
    halfway, go_on = threading.Event(), threading.Event()

    def job(on_event: OnEvent, stop: threading.Event) -> None:
        time.sleep(0.1)  # so that the time left has a pace to go by
        on_event(ProgressEvent("batch", 1, 2, 2, 2))
        halfway.set()
        go_on.wait(10)

    id = manager.submit("demo", "two epochs", job)
    assert halfway.wait(10)
    status = manager.status(id)
    assert (status.state, status.progress) == ("running", 0.5)
    assert status.eta_s is not None and 0 < status.eta_s < 5
    go_on.set()
    assert manager.wait(id, timeout=10).state == "finished"


def test_one_job_at_a_time_in_order(manager: JobManager) -> None:
    spans: list[tuple[str, float, float]] = []

    def job(name: str) -> object:
        def fn(on_event: OnEvent, stop: threading.Event) -> None:
            start = time.monotonic()
            time.sleep(0.1)
            spans.append((name, start, time.monotonic()))

        return fn

    ids = [manager.submit("demo", name, job(name)) for name in "abc"]
    for id in ids:
        manager.wait(id, timeout=10)
    assert [name for name, _, _ in spans] == ["a", "b", "c"]
    for (_, _, end), (_, start, _) in zip(spans, spans[1:]):
        assert end <= start


def test_cancel_running_selection(manager: JobManager) -> None:
    config = SelectionConfig(**{**TINY, "epochs": 50})
    id = manager.submit_selection(config)
    wait_until(lambda: manager.status(id).epoch >= 1, timeout=60)
    manager.cancel(id)
    status = manager.wait(id, timeout=60)

    assert status.state == "cancelled"
    assert manager.catalog.get(id).state == "cancelled"
    assert Run(manager.runs_dir / id).status()["state"] == "cancelled"


def test_cancel_queued_job_never_runs(manager: JobManager) -> None:
    release, ran = threading.Event(), threading.Event()
    blocker = manager.submit("demo", "blocker", lambda e, s: release.wait(10))
    queued = manager.submit("demo", "queued", lambda e, s: ran.set())
    manager.cancel(queued)
    release.set()
    manager.wait(blocker, timeout=10)
    assert manager.status(queued).state == "cancelled"
    assert not ran.is_set()
    with pytest.raises(ValueError, match="not queued or running"):
        manager.cancel(queued)


def test_failing_job_is_recorded_and_the_queue_goes_on(manager: JobManager) -> None:
    def broken(on_event: OnEvent, stop: threading.Event) -> None:
        raise ValueError("the pool is empty")

    failed = manager.submit("demo", "broken", broken)
    after = manager.submit("demo", "after", lambda e, s: None)
    assert manager.wait(after, timeout=10).state == "finished"
    status = manager.status(failed)
    assert status.state == "failed"
    assert status.error == "ValueError: the pool is empty"
    assert manager.catalog.get(failed).error == status.error


def test_bad_data_fails_with_its_name_and_leaves_no_folder(
    manager: JobManager, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-images"
    config = SelectionConfig(data=str(missing), device="cpu")
    status = manager.wait(manager.submit_selection(config), timeout=30)
    assert status.state == "failed"
    assert "DatasetError" in str(status.error) and str(missing) in str(status.error)
    assert not (manager.runs_dir / status.id).exists()


# A manager in a child process, killed mid-run: the restart the app survives.
CHILD = """
import sys
from pathlib import Path
from coreset_core.config import SelectionConfig
from coreset_core.jobs import JobManager
jobs = JobManager(Path(sys.argv[1]))
config = SelectionConfig(pool_size=128, epochs=4, batch_size=64, device="cpu")
jobs.wait(jobs.submit_selection(config))
"""


def test_restart_marks_interrupted_and_resume_finishes(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(runs_dir)], cwd=ROOT, env=os.environ.copy()
    )
    try:
        # kill it once an epoch is saved and the next has begun
        catalog_path = runs_dir / CATALOG_FILE

        def one_epoch_done() -> bool:
            jobs = Catalog(catalog_path).jobs() if catalog_path.exists() else []
            return bool(jobs) and jobs[0].epoch >= 1

        wait_until(one_epoch_done, timeout=120)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    (record,) = Catalog(catalog_path).jobs()
    assert record.state == "running"

    manager = JobManager(runs_dir)
    try:
        assert manager.status(record.id).state == "interrupted"
        assert record.run_dir is not None
        done = json.loads((record.run_dir / "status.json").read_text())["epoch"]
        assert done >= 1
        id = manager.resume_selection(record.run_dir)
        assert id == record.id
        status = manager.wait(id, timeout=120)
    finally:
        manager.close()
    assert status.state == "finished", status.error
    run = Run(record.run_dir)
    assert run.similarity().shape == (4, 128)
    assert list(run.metrics()["epoch"]) == [1, 2, 3, 4]


def test_live_job_of_another_process_is_left_alone(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        catalog = Catalog(tmp_path / CATALOG_FILE)
        owner = f"{os.uname().nodename}:{sleeper.pid}:other"
        catalog.add("theirs", "selection", "", None, "cpu", owner)
        catalog.update("theirs", state="running")
        manager = JobManager(tmp_path)
        assert manager.status("theirs").state == "running"
        manager.close()
    finally:
        sleeper.kill()
        sleeper.wait()
    JobManager(tmp_path).close()
    assert catalog.get("theirs").state == "interrupted"


def test_layout_job_computes_once_and_goes_stale(
    manager: JobManager, finished_run: Path, tmp_path: Path
) -> None:
    import shutil

    run_dir = manager.runs_dir / finished_run.name
    shutil.copytree(finished_run, run_dir)
    status = manager.wait(manager.submit_layout(run_dir), timeout=180)
    assert status.state == "finished", status.error

    layout = load_layout(run_dir)
    assert layout is not None and layout.shape == (300, 2)
    assert np.isfinite(layout).all()
    # rewritten embeddings (a resumed run) make the cached layout stale
    stamp = (run_dir / LAYOUT_FILE).stat().st_mtime + 5
    os.utime(run_dir / "embeddings.npy", (stamp, stamp))
    assert load_layout(run_dir) is None


def test_plot_sample_keeps_small_pools_whole_and_samples_large_ones() -> None:
    assert np.array_equal(plot_sample(500, limit=1000), np.arange(500))
    sample = plot_sample(50_000, limit=1000, seed=3)
    assert len(sample) == 1000 and len(np.unique(sample)) == 1000
    assert np.all(np.diff(sample) > 0) and sample.max() < 50_000
    assert np.array_equal(sample, plot_sample(50_000, limit=1000, seed=3))
