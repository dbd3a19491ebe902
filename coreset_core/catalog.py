"""The catalog: one SQLite row per job, kept in the runs folder.

The run folder's status.json is the record of one run; the catalog is the index
over all of them, so that a reloaded page or a restarted app lists every job
(selection runs, layouts, evaluations) with its state without a live thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_FILE = "catalog.sqlite"

# States a job moves through; "interrupted" is a job whose process ended
# while it was queued or running.
STATES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
LIVE_STATES = ("queued", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    run_dir TEXT,
    device TEXT NOT NULL,
    state TEXT NOT NULL,
    owner TEXT NOT NULL,
    epoch INTEGER NOT NULL DEFAULT 0,
    epochs INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class JobRecord:
    """One catalog row, as the pages and the job manager read it."""

    id: str
    kind: str
    title: str
    run_dir: Path | None
    device: str
    state: str
    owner: str
    epoch: int
    epochs: int
    error: str | None
    params: dict[str, Any]
    created_at: float
    updated_at: float


class Catalog:
    """A small SQLite table of jobs, safe to use from several threads.

    Every call opens its own connection: sqlite3 connections must not cross
    threads, and the calls are rare (a few per epoch), so pooling buys nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # timeout: wait for another thread's or process's write to finish
        with closing(sqlite3.connect(self.path, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            with conn:
                yield conn

    def add(
        self,
        id: str,
        kind: str,
        title: str,
        run_dir: Path | None,
        device: str,
        owner: str,
        params: dict[str, Any] | None = None,
    ) -> None:
        """Insert a queued job, or requeue an existing one (a resumed run)."""
        now = time.time()
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO jobs (id, kind, title, run_dir, device, state, owner,"
                " params, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET state = 'queued', owner = ?,"
                " device = ?, error = NULL, updated_at = ?",
                (
                    id,
                    kind,
                    title,
                    None if run_dir is None else str(run_dir),
                    device,
                    owner,
                    json.dumps(params or {}),
                    now,
                    now,
                    owner,
                    device,
                    now,
                ),
            )

    def update(
        self,
        id: str,
        state: str | None = None,
        epoch: int | None = None,
        epochs: int | None = None,
        error: str | None = None,
    ) -> None:
        """Change a job's state or progress; None leaves a field as it is."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        fields = {"state": state, "epoch": epoch, "epochs": epochs, "error": error}
        changes = {k: v for k, v in fields.items() if v is not None}
        assignments = ", ".join(f"{k} = ?" for k in changes)
        with self._connect() as conn:
            cursor = conn.execute(
                f"UPDATE jobs SET {assignments}, updated_at = ? WHERE id = ?",
                (*changes.values(), time.time(), id),
            )
        if cursor.rowcount == 0:
            raise KeyError(f"no job {id!r} in the catalog {self.path}")

    def get(self, id: str) -> JobRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (id,)).fetchone()
        return None if row is None else _record(row)

    def jobs(self, kind: str | None = None) -> list[JobRecord]:
        """All jobs, newest first; only those of one kind when given."""
        query = "SELECT * FROM jobs"
        args: tuple[str, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY created_at DESC", args).fetchall()
        return [_record(row) for row in rows]

    def mark_interrupted(self, owners: set[str]) -> list[str]:
        """Mark the live jobs of the given (ended) owners interrupted; return ids."""
        ids = [
            job.id
            for job in self.jobs()
            if job.state in LIVE_STATES and job.owner in owners
        ]
        for id in ids:
            self.update(id, state="interrupted")
        return ids


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        title=row["title"],
        run_dir=None if row["run_dir"] is None else Path(row["run_dir"]),
        device=row["device"],
        state=row["state"],
        owner=row["owner"],
        epoch=row["epoch"],
        epochs=row["epochs"],
        error=row["error"],
        params=json.loads(row["params"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
