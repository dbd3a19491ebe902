"""Data: choose the images to score and look at them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from coreset_core.datasets import (
    TORCHVISION_NAMES,
    DatasetError,
    default_data_root,
    load_dataset,
)
from ui.gallery import image_grid
from ui.state import require_frame

SOURCES = {
    "Built-in CIFAR-10 sample": "builtin",
    "Image folder or archive": "path",
    ".npz file": "npz",
    "torchvision dataset": "torchvision",
}
SAMPLE = 48


@st.cache_data(show_spinner="Loading the dataset…", max_entries=4)
def summarise(source: str, root: str | None, download: bool) -> dict[str, Any]:
    """Counts and a sample of the dataset: what the page shows, small to cache."""
    dataset = load_dataset(source, root, download)
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(len(dataset), min(SAMPLE, len(dataset)), replace=False))
    names = dataset.classes or []
    counts, captions = None, [dataset.ids[i] for i in picked]
    if dataset.labels is not None:
        label_names = [names[y] if y < len(names) else str(y) for y in dataset.labels]
        counts = pd.Series(label_names).value_counts().sort_index()
        captions = [label_names[i] for i in picked]
    return {
        "count": len(dataset),
        "test_count": 0 if dataset.test is None else len(dataset.test),
        "shape": dataset.images.shape[1:],
        "class_counts": counts,
        "sample": dataset.images[picked],
        "captions": captions,
    }


require_frame()
st.title("Data")
kind = SOURCES[st.radio("Source", list(SOURCES), horizontal=True, key="data_kind")]
root, download = None, False
if kind == "builtin":
    source = "builtin"
elif kind == "torchvision":
    source = st.selectbox("Dataset", TORCHVISION_NAMES, key="data_name")
    default_root = str(default_data_root())
    root = st.text_input("Root folder", placeholder=default_root, key="data_root")
    root = root.strip() or None
    download = st.checkbox("Download when missing", key="data_download")
else:
    hint = "/path/to/images or images.tar.gz" if kind == "path" else "/path/to/data.npz"
    source = st.text_input("Path", placeholder=hint, key="data_path").strip()
    if not source:
        st.info("Enter a path to load.")
        st.stop()

# the Select page starts from the data chosen here
st.session_state["data_source"] = (source, root, download)

try:
    summary = summarise(source, root, download)
except (DatasetError, OSError) as exc:
    # OSError: a download that cannot reach its host
    st.error(f"Could not load the data: {exc}")
    st.stop()

shape = " x ".join(str(side) for side in summary["shape"])
cols = st.columns(4)
cols[0].metric("Examples", f"{summary['count']:,}")
cols[1].metric("Test examples", f"{summary['test_count']:,}")
cols[2].metric("Image (C x H x W)", shape)
cols[3].metric(
    "Classes",
    "none" if summary["class_counts"] is None else len(summary["class_counts"]),
)

if summary["class_counts"] is not None:
    st.subheader("Examples per class")
    st.bar_chart(
        summary["class_counts"], x_label="class", y_label="examples", height=260
    )
else:
    st.caption("No labels: the pool is drawn at random and accuracy is not measured.")

st.subheader(f"A random sample of {len(summary['sample'])}")
image_grid(summary["sample"], summary["captions"], columns=12)
