"""Select: configure and launch a selection run, then watch it train."""

from __future__ import annotations

import numpy as np
import streamlit as st

from coreset_core.backbones import BACKBONES
from coreset_core.config import METHODS, SelectionConfig
from coreset_core.runs import Run
from ui.charts import loss_figure, similarity_figure, trajectories_figure
from ui.state import manager, require_frame

POLL_S = 2.0
DEVICES = ("auto", "cpu", "cuda")
TRAJECTORIES = 3  # lowest and highest examples so far, each

require_frame()
st.title("Select")
jobs = manager()
source, root, download = st.session_state.get("data_source", ("builtin", None, False))
defaults = SelectionConfig()

# the form: every field of the config the page lets you change
with st.form("select_form"):
    st.caption(f"Data: **{source}** (change it on the Data page)")
    left, middle, right = st.columns(3)
    method = left.selectbox("Method", METHODS, key="select_method")
    backbone = middle.selectbox(
        "Backbone", BACKBONES, BACKBONES.index(defaults.backbone), key="select_backbone"
    )
    device = right.selectbox("Device", DEVICES, key="select_device")
    epochs = left.number_input("Epochs", 1, 2000, defaults.epochs, key="select_epochs")
    batch_size = middle.number_input(
        "Batch size", 2, 8192, defaults.batch_size, key="select_batch"
    )
    temperature = right.number_input(
        "Temperature (empty: the method's default)",
        0.01,
        10.0,
        None,
        0.05,
        key="select_temperature",
    )
    fraction = left.slider(
        "Fraction kept", 0.01, 1.0, defaults.fraction, 0.01, key="select_fraction"
    )
    seed = middle.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="select_seed")
    pool_size = right.number_input(
        "Pool size (empty: the whole dataset)", 2, None, None, 100, key="select_pool"
    )
    launched = st.form_submit_button("Launch", type="primary")

if launched:
    try:
        config = SelectionConfig(
            data=source,
            data_root=root,
            download=download,
            pool_size=pool_size,
            method=method,
            backbone=backbone,
            epochs=int(epochs),
            batch_size=int(batch_size),
            temperature=temperature,
            fraction=fraction,
            seed=int(seed),
            device=device,
        )
        launched_id = jobs.submit_selection(config)
        # watch the new run, whatever the run box showed before
        st.session_state["select_job"] = launched_id
        st.session_state["select_watch"] = launched_id
    except ValueError as exc:
        st.error(f"Cannot launch: {exc}")

runs = jobs.jobs("selection")
if not runs:
    st.info("No selection runs yet: launch one above.")
    st.stop()

# which run to watch: the one just launched, else the newest
ids = [job.id for job in runs]
titles = {job.id: job.title for job in runs}
chosen = st.session_state.get("select_job")
watched = st.selectbox(
    "Run",
    ids,
    ids.index(chosen) if chosen in ids else 0,
    key="select_watch",
    # a fixed label: one that changed with the state would reset the choice
    format_func=lambda id: f"{id} · {titles[id]}",
)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def monitor(id: str, was_live: bool) -> None:
    """Progress, controls and charts of one run; polled while it is live."""
    status = jobs.status(id)
    if was_live and not status.live:
        st.rerun()  # the whole page, so that polling stops
    text = f"{status.state} · epoch {status.epoch}/{status.epochs}"
    if status.state == "running" and status.steps:
        text += f" · batch {status.step}/{status.steps}"
    if status.eta_s is not None:
        text += f" · {_duration(status.eta_s)} left"
    st.progress(status.progress, text=text)

    if status.live and not any(job.id == id for job in jobs.active()):
        st.caption("This run belongs to another app process; cancel it there.")
    elif status.live and st.button("Cancel", key="select_cancel"):
        jobs.cancel(id)
        st.rerun()
    if status.state in ("interrupted", "cancelled") and status.run_dir is not None:
        st.caption("Stopped before the end: resume from its last finished epoch.")
        if st.button("Resume", key="select_resume"):
            jobs.resume_selection(status.run_dir)
            st.rerun()
    if status.state == "failed":
        st.error(f"The run failed: {status.error}")

    metrics = None
    if status.run_dir is not None and (status.run_dir / "config.json").exists():
        run = Run(status.run_dir)
        metrics = run.metrics()
    if metrics is None or metrics.empty:
        st.caption("Charts appear after the first epoch.")
        return
    left, right = st.columns(2)
    left.plotly_chart(loss_figure(metrics), key="select_loss")
    right.plotly_chart(similarity_figure(metrics), key="select_similarity")

    # trajectories of the lowest- and highest-scoring examples so far
    similarity = run.similarity()
    order = np.argsort(similarity.astype(np.float32).sum(axis=0))
    picked = [*order[:TRAJECTORIES], *order[-TRAJECTORIES:]]
    names = [
        f"#{i} {'low' if k < TRAJECTORIES else 'high'}" for k, i in enumerate(picked)
    ]
    st.plotly_chart(trajectories_figure(similarity, picked, names), key="select_paths")


live = jobs.status(watched).live
st.fragment(monitor, run_every=POLL_S if live else None)(watched, live)
