"""What the pages share: the runs folder, the process's job manager, the run shown."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from coreset_core.jobs import JobManager
from coreset_core.runs import Run, list_runs

RUNS_ENV = "CORESET_RUNS_DIR"


def require_frame() -> None:
    """Send a page that runs on its own back through app.py, the frame.

    NOTE: until app.py has run once in a server's life, Streamlit runs a script
    from pages/ by itself (its older multipage mode): a tab reconnecting to a
    restarted server would get the page without the sidebar. Switching to the
    main script restores the frame and its navigation.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        st.switch_page("app.py")


def runs_dir() -> Path:
    """The runs folder: $CORESET_RUNS_DIR, else ./runs."""
    return Path(os.environ.get(RUNS_ENV, "runs")).resolve()


@st.cache_resource(show_spinner=False)
def _manager(path: str) -> JobManager:
    return JobManager(Path(path))


def manager() -> JobManager:
    """The one job manager of this process (per runs folder)."""
    return _manager(str(runs_dir()))


def run_state(run: Run) -> str:
    """A run's state: the catalog's when it has the run, else the run folder's."""
    record = manager().catalog.get(run.name)
    return record.state if record is not None else str(run.status()["state"])


def pick_run(key: str, finished_only: bool = True) -> Run | None:
    """A run chosen in a select box; the last run chosen on any page comes first."""
    runs = list_runs(runs_dir())
    if finished_only:
        runs = [run for run in runs if run_state(run) == "finished"]
    if not runs:
        return None
    names = [run.name for run in runs]
    last = st.session_state.get("state_run")
    index = names.index(last) if last in names else 0
    name = st.selectbox("Run", names, index=index, key=key)
    st.session_state["state_run"] = name
    return runs[names.index(name)]
