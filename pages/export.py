"""Export: a run's scores and any selection from them, as CSV files."""

from __future__ import annotations

import streamlit as st

from coreset_core.runs import selection_table
from coreset_core.selection import STRATEGIES
from ui.state import pick_run, require_frame

require_frame()
st.title("Export")
run = pick_run("export_run")
if run is None:
    st.info("No finished runs yet: launch one on the Select page.")
    st.stop()

# what to keep: a fraction of the pool, chosen by a strategy over the scores
epochs = run.config.epochs
left, middle, right = st.columns(3)
fraction = left.slider(
    "Fraction kept", 0.01, 1.0, run.config.fraction, 0.01, key="export_fraction"
)
strategy = middle.selectbox("Strategy", STRATEGIES, key="export_strategy")
seed = right.number_input(
    "Seed (random and balanced)", 0, 2**31 - 1, 0, key="export_seed"
)
offset = 0
if strategy == "offset":
    offset = int(
        st.number_input(
            "Offset: lowest scores skipped", 0, None, 0, key="export_offset"
        )
    )
window = None
if epochs > 1:
    first, last = st.slider(
        "Epochs summed into the score (first, last)",
        1,
        epochs,
        (1, epochs),
        key="export_window",
    )
    # the core's window counts from 0 and excludes its end
    window = (first - 1, last)

try:
    table = selection_table(
        run.path,
        fraction=fraction,
        strategy=strategy,
        window=window,
        offset=offset,
        seed=int(seed),
    )
except ValueError as exc:
    st.error(f"Cannot select: {exc}")
    st.stop()

kept = int((table["decision"] == "keep").sum())
st.metric("Kept", f"{kept:,} of {len(table):,}")
st.dataframe(table.sort_values("rank"), hide_index=True, height=320)

name = f"{run.name}_{strategy}_{fraction:.2f}"
left, right = st.columns(2)
left.download_button(
    "Download the selection (CSV)",
    table.to_csv(index=False),
    file_name=f"{name}.csv",
    mime="text/csv",
    key="export_selection",
    on_click="ignore",
    type="primary",
)
right.download_button(
    "Download the scores (CSV)",
    table.drop(columns="decision").to_csv(index=False),
    file_name=f"{run.name}_scores.csv",
    mime="text/csv",
    key="export_scores",
    on_click="ignore",
)
