"""Explore: the UMAP of a run's embeddings, galleries and single examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from coreset_core.datasets import ImageDataset
from coreset_core.layout import PLOT_LIMIT, load_layout, plot_sample
from coreset_core.runs import Run, selection_table
from ui.charts import map_figure, trajectories_figure
from ui.gallery import image_grid, to_display
from ui.state import manager, pick_run, require_frame

POLL_S = 2.0
GALLERY = 16
SHOWN_SELECTED = 64


@st.cache_resource(show_spinner="Loading the run's images…", max_entries=4)
def load_pool(path: str) -> ImageDataset:
    return Run(Path(path)).load_pool()


@st.cache_data(show_spinner=False, max_entries=16)
def load_selection(path: str, fraction: float) -> pd.DataFrame:
    """A finished run's selection never changes: compute it once per fraction."""
    return selection_table(Path(path), fraction=fraction)


def layout_job(run_dir: Path) -> None:
    """Start the UMAP when it is missing and show its progress until it is done."""
    status = manager().latest("layout", run_dir)
    if load_layout(run_dir) is not None:
        st.rerun()  # the whole page, now with the map
    if status is not None and status.state == "failed":
        st.error(f"The UMAP failed: {status.error}")
        if not st.button("Try again", key="explore_retry"):
            return
    if status is None or not status.live:
        manager().submit_layout(run_dir)
        status = manager().latest("layout", run_dir)
    assert status is not None
    st.progress(status.progress, text=f"UMAP {status.state}: {status.message or '…'}")
    st.caption("The first UMAP after a start compiles for up to a minute.")


require_frame()
st.title("Explore")
run = pick_run("explore_run")
if run is None:
    st.info("No finished runs yet: launch one on the Select page.")
    st.stop()

pool = load_pool(str(run.path))
similarity = run.similarity()
fraction = st.slider(
    "Fraction kept", 0.01, 1.0, run.config.fraction, 0.01, key="explore_fraction"
)
table = load_selection(str(run.path), fraction)
classes = pool.classes or []
table["class"] = [
    "none" if pd.isna(y) else (classes[int(y)] if int(y) < len(classes) else str(y))
    for y in table["label"]
]
captions = [f"#{i} · {s:.2f}" for i, s in zip(table["index"], table["score"])]

# the map: one point per example, or a random sample of a large pool
st.subheader("UMAP of the embeddings")
layout = load_layout(run.path)
if layout is None:
    st.fragment(layout_job, run_every=POLL_S)(run.path)
else:
    colour_by = st.radio(
        "Colour by",
        ("score", "keep/drop", "label"),
        horizontal=True,
        key="explore_colour",
    )
    column = {"score": "score", "keep/drop": "decision", "label": "class"}[colour_by]
    shown = plot_sample(len(layout))
    if len(shown) < len(layout):
        st.caption(f"Showing a random {PLOT_LIMIT:,} of {len(layout):,} points.")
    hover = [f"{captions[i]} · {table['class'][i]}" for i in shown]
    figure = map_figure(layout[shown], shown, table[column].iloc[shown], hover)
    event = st.container(key="explore_map_box").plotly_chart(
        figure, on_select="rerun", key="explore_map", selection_mode=("box", "lasso")
    )
    picked = [int(np.ravel(p["customdata"])[0]) for p in event.selection.points]
    if picked:
        picked = sorted(picked, key=lambda i: table["score"][i])[:SHOWN_SELECTED]
        st.caption(f"{len(event.selection.points)} selected, lowest scores first.")
        image_grid(pool.images[picked], [captions[i] for i in picked])
    else:
        st.caption("Draw a box or lasso on the map to see those images.")

# galleries at both ends of the score
order = table.sort_values("score")["index"].to_numpy()
lowest, highest = st.tabs(["Lowest scores (kept first)", "Highest scores"])
with lowest:
    image_grid(pool.images[order[:GALLERY]], [captions[i] for i in order[:GALLERY]])
with highest:
    top = order[::-1][:GALLERY]
    image_grid(pool.images[top], [captions[i] for i in top])

# one example and its similarity over the epochs
st.subheader("One example")
index = int(
    st.number_input(
        "Example index", 0, len(table) - 1, int(order[0]), key="explore_index"
    )
)
left, right = st.columns([1, 3])
left.image(
    to_display(pool.images[index : index + 1])[0],
    width=160,
    caption=f"{captions[index]} · {table['class'][index]} · {table['decision'][index]}",
)
right.plotly_chart(
    trajectories_figure(similarity, [index], [f"#{index}"]), key="explore_trajectory"
)
