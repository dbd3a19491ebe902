"""The catalog of jobs: rows survive a new Catalog object, states are checked."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from coreset_core.catalog import Catalog


def test_rows_persist_across_instances(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add(
        "run-a",
        "selection",
        "simclr",
        tmp_path / "run-a",
        "cpu",
        "h:1:x",
        {"epochs": 3},
    )
    catalog.update("run-a", state="running", epoch=1, epochs=3)

    # a fresh object on the same file, as after an app restart
    record = Catalog(tmp_path / "catalog.sqlite").get("run-a")
    assert record is not None
    assert (record.state, record.epoch, record.epochs) == ("running", 1, 3)
    assert record.run_dir == tmp_path / "run-a"
    assert record.params == {"epochs": 3}


def test_add_again_requeues(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add("run-a", "selection", "simclr", None, "cpu", "h:1:x")
    catalog.update("run-a", state="interrupted", epoch=2, epochs=5, error="boom")
    catalog.add("run-a", "selection", "simclr", None, "cpu", "h:2:y")
    record = catalog.get("run-a")
    assert record is not None
    assert (record.state, record.owner, record.error) == ("queued", "h:2:y", None)
    assert record.epoch == 2  # progress is kept for the resumed run


def test_jobs_newest_first_and_by_kind(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    for id, kind in [("a", "selection"), ("b", "layout"), ("c", "selection")]:
        catalog.add(id, kind, id, None, "cpu", "h:1:x")
    assert [job.id for job in catalog.jobs()] == ["c", "b", "a"]
    assert [job.id for job in catalog.jobs("selection")] == ["c", "a"]


def test_mark_interrupted_only_live_jobs_of_ended_owners(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add("gone-running", "selection", "", None, "cpu", "gone")
    catalog.update("gone-running", state="running")
    catalog.add("gone-finished", "selection", "", None, "cpu", "gone")
    catalog.update("gone-finished", state="finished")
    catalog.add("alive", "selection", "", None, "cpu", "alive")
    assert catalog.mark_interrupted({"gone"}) == ["gone-running"]
    states = {job.id: job.state for job in catalog.jobs()}
    assert states == {
        "gone-running": "interrupted",
        "gone-finished": "finished",
        "alive": "queued",
    }


def test_bad_state_and_unknown_job_are_named(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add("a", "selection", "", None, "cpu", "h:1:x")
    with pytest.raises(ValueError, match="'done'"):
        catalog.update("a", state="done")
    with pytest.raises(KeyError, match="nope"):
        catalog.update("nope", state="running")


def test_concurrent_updates_from_threads(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    ids = [f"job-{i}" for i in range(8)]
    for id in ids:
        catalog.add(id, "selection", "", None, "cpu", "h:1:x")

    def bump(id: str) -> None:
        for epoch in range(1, 21):
            catalog.update(id, state="running", epoch=epoch, epochs=20)

    threads = [threading.Thread(target=bump, args=(id,)) for id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {job.epoch for job in catalog.jobs()} == {20}
