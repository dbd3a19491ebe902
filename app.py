"""Coreset studio: the frame around the pages (config, shared sidebar, navigation).

Run with `streamlit run app.py`; runs go to $CORESET_RUNS_DIR, else ./runs.

The pages live in views/, not pages/: a folder named pages/ next to the main
script puts Streamlit into its older multipage mode until this script has run
once, so a first visit straight to a page's URL would skip this frame.
"""

from __future__ import annotations

import logging

import streamlit as st

from views.state import manager, runs_dir

st.set_page_config(page_title="Coreset studio", layout="wide")

# the core and the job workers log; show it in the server's terminal
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

pages = [
    st.Page("views/data.py", title="Data", default=True),
    st.Page("views/select.py", title="Select"),
    st.Page("views/explore.py", title="Explore"),
    st.Page("views/compare.py", title="Compare"),
    st.Page("views/export.py", title="Export"),
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
