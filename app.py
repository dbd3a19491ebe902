"""Coreset studio: the frame around the pages (config, shared sidebar, navigation).

Run with `streamlit run app.py`; runs go to $CORESET_RUNS_DIR, else ./runs.

The pages in pages/ are views; ui/ holds what they share (the job manager,
charts, image grids). Each page first calls ui.state.require_frame, which
sends a page that Streamlit runs without this frame (on a freshly started
server, before this script has run) back here.
"""

from __future__ import annotations

import logging

import streamlit as st

from ui.state import manager, runs_dir

st.set_page_config(page_title="Coreset studio", layout="wide")

# the core and the job workers log; show it in the server's terminal
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

pages = [
    st.Page("pages/data.py", title="Data", default=True),
    st.Page("pages/select.py", title="Select"),
    st.Page("pages/explore.py", title="Explore"),
    st.Page("pages/compare.py", title="Compare"),
    st.Page("pages/export.py", title="Export"),
]
page = st.navigation(pages)


@st.fragment(run_every=3)
def job_queue() -> None:
    """The live jobs of this app, polled every few seconds."""
    jobs = manager().active()
    if not jobs:
        st.caption("No jobs queued or running.")
    for job in jobs:
        done = f"{job.progress:.0%}" if job.state == "running" else "queued"
        st.caption(f"**{job.kind}** {job.title} · {job.device} · {done}")


with st.sidebar:
    st.caption(f"Runs folder: `{runs_dir()}`")
    st.subheader("Jobs")
    job_queue()

page.run()
