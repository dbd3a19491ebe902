"""Background jobs: selection runs, layouts and evaluations, one per device at a time.

A job is a kind plus a callable taking (on_event, stop). Workers run jobs in
FIFO order, one worker thread per device, and keep an in-memory status that
pages poll; every state change also goes to the catalog in the runs folder, so
a restarted app still lists each job, and a job cut off by the restart reads
"interrupted" and can be resumed from its last finished epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coreset_core.catalog import CATALOG_FILE, LIVE_STATES, Catalog, JobRecord
from coreset_core.config import SelectionConfig

logger = logging.getLogger(__name__)

OnEvent = Callable[[Any], None]
JobFn = Callable[[OnEvent, threading.Event], object]

# Owners (managers) alive in this process; a catalog row owned by anything
# else on this host whose process is gone was cut off by a restart.
_LIVE_OWNERS: set[str] = set()


@dataclass
class JobStatus:
    """What a page shows about one job; a copy, safe to read from any thread."""

    id: str
    kind: str
    title: str
    run_dir: Path | None
    device: str
    state: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    # share of the whole job done, in [0, 1], and the time left at this pace
    progress: float = 0.0
    eta_s: float | None = None
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass
class _Job:
    status: JobStatus
    fn: JobFn
    stop: threading.Event = field(default_factory=threading.Event)
    start_progress: float | None = None


class JobManager:
    """Runs jobs in background threads and records them in the catalog."""

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self.runs_dir / CATALOG_FILE)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queues: dict[str, deque[_Job]] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closed = False
        _LIVE_OWNERS.add(self.owner)
        self._recover()

    def _recover(self) -> None:
        """Mark live jobs whose owner is gone as interrupted."""
        owners = {job.owner for job in self.catalog.jobs() if job.state in LIVE_STATES}
        ended = {owner for owner in owners if not _owner_alive(owner)}
        for id in self.catalog.mark_interrupted(ended):
            logger.warning("job %s was cut off by a restart; marked interrupted", id)

    # -- submitting ---------------------------------------------------------

    def submit(
        self,
        kind: str,
        title: str,
        fn: JobFn,
        device: str = "cpu",
        id: str | None = None,
        run_dir: Path | None = None,
        params: dict[str, Any] | None = None,
    ) -> str:
        """Queue fn(on_event, stop) on a device's worker; return the job id."""
        id = id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        status = JobStatus(id, kind, title, run_dir, device, state="queued")
        with self._lock:
            if self._closed:
                raise RuntimeError("the job manager is closed")
            if id in self._jobs and self._jobs[id].status.live:
                raise ValueError(f"job {id!r} is already queued or running")
            self.catalog.add(id, kind, title, run_dir, device, self.owner, params)
            job = _Job(status, fn)
            self._jobs[id] = job
            self._queues.setdefault(device, deque()).append(job)
            self._ensure_worker(device)
            self._lock.notify_all()
        logger.info("queued %s job %s on %s", kind, id, device)
        return id

    def submit_selection(self, config: SelectionConfig) -> str:
        """Queue a selection run in a new run folder named after its id."""
        from coreset_core.training import run_selection

        run_dir = self._new_run_dir(config)
        title = f"{config.method} {config.backbone}, {config.epochs} epochs"

        def fn(on_event: OnEvent, stop: threading.Event) -> object:
            return run_selection(
                config, self.runs_dir, on_event=on_event, stop=stop, run_dir=run_dir
            )

        return self.submit(
            "selection",
            title,
            fn,
            device=device_key(config.device),
            id=run_dir.name,
            run_dir=run_dir,
            params=config.to_dict(),
        )

    def resume_selection(self, run_dir: Path) -> str:
        """Queue the rest of an interrupted or cancelled run."""
        from coreset_core.runs import Run
        from coreset_core.training import resume_selection

        run = Run(Path(run_dir))
        config = run.config
        title = f"{config.method} {config.backbone}, {config.epochs} epochs (resumed)"

        def fn(on_event: OnEvent, stop: threading.Event) -> object:
            return resume_selection(run.path, on_event=on_event, stop=stop)

        return self.submit(
            "selection",
            title,
            fn,
            device=device_key(config.device),
            id=run.path.name,
            run_dir=run.path,
            params=config.to_dict(),
        )

    def submit_layout(self, run_dir: Path) -> str:
        """Queue the UMAP of a finished run, unless it is already queued or running."""
        from coreset_core.layout import compute_layout

        run_dir = Path(run_dir)
        id = f"layout-{run_dir.name}"
        with self._lock:
            job = self._jobs.get(id)
            if job is not None and job.status.live:
                return id

        def fn(on_event: OnEvent, stop: threading.Event) -> object:
            return compute_layout(run_dir, on_event=on_event, stop=stop)

        # UMAP runs on the CPU whatever the run trained on
        title = f"UMAP of {run_dir.name}"
        return self.submit("layout", title, fn, device="cpu", id=id, run_dir=run_dir)

    def _new_run_dir(self, config: SelectionConfig) -> Path:
        # the core's naming, <time>-<data>-<method>, without making the folder:
        # bad input must leave none behind
        data = Path(config.data).name.split(".")[0] or config.data
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in data)
        base = f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{config.method}"
        with self._lock:
            known = set(self._jobs) | {job.id for job in self.catalog.jobs()}
            name, n = base, 1
            while name in known or (self.runs_dir / name).exists():
                n += 1
                name = f"{base}-{n}"
        return self.runs_dir / name

    # -- controlling and reading ------------------------------------------

    def cancel(self, id: str) -> None:
        """Drop a queued job, or ask a running one to stop between batches."""
        with self._lock:
            job = self._jobs.get(id)
            if job is None or not job.status.live:
                raise ValueError(f"job {id!r} is not queued or running here")
            job.stop.set()
            if job.status.state == "queued":
                self._queues[job.status.device].remove(job)
                self._finish(job, "cancelled")

    def status(self, id: str) -> JobStatus:
        """The live status of a job of this process, else its catalog record."""
        with self._lock:
            job = self._jobs.get(id)
            if job is not None:
                return _copy(job.status)
        record = self.catalog.get(id)
        if record is None:
            raise KeyError(f"no job {id!r}")
        return _from_record(record)

    def jobs(self, kind: str | None = None) -> list[JobStatus]:
        """Every job in the catalog, newest first, live ones with live progress."""
        return [self.status(record.id) for record in self.catalog.jobs(kind)]

    def latest(self, kind: str, run_dir: Path) -> JobStatus | None:
        """The newest job of a kind on a run folder, or None."""
        for record in self.catalog.jobs(kind):
            if record.run_dir == Path(run_dir):
                return self.status(record.id)
        return None

    def active(self, kind: str | None = None) -> list[JobStatus]:
        """Queued and running jobs of this process, in the order they will run."""
        with self._lock:
            return [
                _copy(job.status)
                for job in self._jobs.values()
                if job.status.live and kind in (None, job.status.kind)
            ]

    def wait(self, id: str, timeout: float | None = None) -> JobStatus:
        """Block until a job leaves the queue and finishes (for tests and scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._jobs[id].status.live:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"job {id!r} still {self._jobs[id].status.state}"
                    )
                self._lock.wait(left)
            return _copy(self._jobs[id].status)

    def close(self, timeout: float | None = 30) -> None:
        """Cancel every job, stop the workers and wait for them."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.stop.set()
            for queue in self._queues.values():
                while queue:
                    self._finish(queue.popleft(), "cancelled")
            self._lock.notify_all()
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout)
        _LIVE_OWNERS.discard(self.owner)

    # -- the worker ---------------------------------------------------------

    def _ensure_worker(self, device: str) -> None:
        worker = self._workers.get(device)
        if worker is None or not worker.is_alive():
            # daemon: an app that exits mid-job leaves the job "running" in
            # the catalog, which the next manager reads as interrupted
            worker = threading.Thread(
                target=self._work, args=(device,), name=f"jobs-{device}", daemon=True
            )
            self._workers[device] = worker
            worker.start()

    def _work(self, device: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[device]
                while not queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = queue.popleft()
                job.status.state = "running"
                job.status.started_at = time.time()
                self.catalog.update(job.status.id, state="running")
                self._lock.notify_all()
            self._run(job)

    def _run(self, job: _Job) -> None:
        from coreset_core.training import Cancelled

        logger.info("running %s job %s", job.status.kind, job.status.id)
        try:
            job.fn(lambda event: self._on_event(job, event), job.stop)
        except Cancelled:
            logger.info("job %s cancelled", job.status.id)
            with self._lock:
                self._finish(job, "cancelled")
        except Exception as exc:
            # the job failed, not the worker: record why and take the next one
            logger.exception("job %s failed", job.status.id)
            with self._lock:
                self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
        else:
            with self._lock:
                self._finish(job, "finished")

    def _finish(self, job: _Job, state: str, error: str | None = None) -> None:
        # caller holds the lock
        job.status.state = state
        job.status.error = error
        job.status.eta_s = None
        job.status.finished_at = time.time()
        if state == "finished":
            job.status.progress = 1.0
        self.catalog.update(job.status.id, state=state, error=error)
        self._lock.notify_all()

    def _on_event(self, job: _Job, event: Any) -> None:
        """Turn a progress event into the job's status (and, per epoch, the catalog)."""
        kind = getattr(event, "kind", "")
        epoch = int(getattr(event, "epoch", 0) or 0)
        epochs = int(getattr(event, "epochs", 0) or 0)
        step = int(getattr(event, "step", 0) or 0)
        steps = int(getattr(event, "steps", 0) or 0)
        done = _progress(kind, epoch, epochs, step, steps)
        with self._lock:
            status = job.status
            if job.start_progress is None:
                # a resumed run starts part way; time left counts from here
                job.start_progress = (epoch - 1) / epochs if epochs else 0.0
            status.epoch, status.epochs = epoch, epochs
            status.step, status.steps = step, steps
            status.progress = done
            status.message = str(getattr(event, "message", "") or "")
            status.eta_s = _eta(status.started_at, job.start_progress, done)
            if kind == "epoch":
                status.metrics = dict(getattr(event, "metrics", {}) or {})
                self.catalog.update(status.id, epoch=epoch, epochs=epochs)


def device_key(name: str) -> str:
    """The worker a device name maps to: "cpu" or "cuda:<index>"."""
    from coreset_core.device import resolve_device

    device = resolve_device(name)
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return device.type


def _owner_alive(owner: str) -> bool:
    # NOTE: a runs folder is assumed to be served from one machine; an owner
    # on another host name (a recreated container) counts as ended.
    host, pid, _ = owner.split(":")
    if owner in _LIVE_OWNERS:
        return True
    if host != socket.gethostname() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _progress(kind: str, epoch: int, epochs: int, step: int, steps: int) -> float:
    if epochs and kind == "epoch":
        return min(epoch / epochs, 1.0)
    within = step / steps if steps else 0.0
    if epochs:
        return min((epoch - 1 + within) / epochs, 1.0)
    return min(within, 1.0)


def _eta(started_at: float | None, start: float, done: float) -> float | None:
    if started_at is None or done <= start:
        return None
    elapsed = time.time() - started_at
    return elapsed * (1.0 - done) / (done - start)


def _copy(status: JobStatus) -> JobStatus:
    return dataclasses.replace(status, metrics=dict(status.metrics))


def _from_record(record: JobRecord) -> JobStatus:
    done = record.epoch / record.epochs if record.epochs else 0.0
    if record.state == "finished":
        done = 1.0
    return JobStatus(
        id=record.id,
        kind=record.kind,
        title=record.title,
        run_dir=record.run_dir,
        device=record.device,
        state=record.state,
        epoch=record.epoch,
        epochs=record.epochs,
        progress=done,
        error=record.error,
        started_at=record.created_at,
        finished_at=None if record.state in LIVE_STATES else record.updated_at,
    )
