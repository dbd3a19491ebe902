"""Compare: retrain target models on the coreset and on baselines, then compare.

Needs coreset_core.evaluation; without it the page says so and stops.
"""

from __future__ import annotations

import importlib.util
import threading

import streamlit as st

from coreset_core.backbones import BACKBONES
from coreset_core.jobs import OnEvent, device_key
from ui.charts import accuracy_figure
from ui.state import manager, pick_run, require_frame

POLL_S = 3.0
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

require_frame()
st.title("Compare")
if importlib.util.find_spec("coreset_core.evaluation") is None:
    st.info("Evaluation not available: this install has no coreset_core.evaluation.")
    st.stop()

from coreset_core import evaluation  # noqa: E402
from coreset_core.supervised import SCHEDULES, TargetConfig  # noqa: E402

run = pick_run("compare_run")
if run is None:
    st.info("No finished runs yet: launch one on the Select page.")
    st.stop()

# what to train: each subset at each fraction, once per seed
with st.form("compare_form"):
    left, right = st.columns(2)
    subsets = left.multiselect(
        "Subsets", evaluation.SUBSETS, evaluation.SUBSETS, key="compare_subsets"
    )
    fractions = right.multiselect(
        "Fractions", FRACTIONS, (0.3, 0.5, 0.7), key="compare_fractions"
    )
    cross = left.multiselect(
        "Cross-test fractions (coreset vs the rest)",
        FRACTIONS,
        (0.5,),
        key="compare_cross",
    )
    seeds = right.number_input("Seeds", 1, 10, 1, key="compare_seeds")
    backbone = left.selectbox("Target backbone", BACKBONES, key="compare_backbone")
    schedule = right.selectbox(
        "Schedule", SCHEDULES, SCHEDULES.index("fast"), key="compare_schedule"
    )
    epochs = left.number_input(
        "Target epochs (empty: the schedule's)", 1, 1000, None, key="compare_epochs"
    )
    launched = st.form_submit_button("Launch evaluation", type="primary")

if launched:
    try:
        target = TargetConfig(backbone=backbone, schedule=schedule, epochs=epochs)
        config = evaluation.EvaluationConfig(
            subsets=tuple(subsets),
            fractions=tuple(sorted(fractions)),
            seeds=tuple(range(int(seeds))),
            target=target,
            cross_test_fractions=tuple(sorted(cross)),
        )

        def fn(on_event: OnEvent, stop: threading.Event) -> object:
            return evaluation.run_evaluation(run.path, config, on_event, stop)

        # one job per run and target setting: relaunching resumes it
        manager().submit(
            "evaluation",
            f"{config.name} on {run.name}",
            fn,
            device=device_key(target.device),
            id=f"evaluation-{run.name}-{config.name}",
            run_dir=run.path,
            params=config.to_dict(),
        )
    except ValueError as exc:
        st.error(f"Cannot launch: {exc}")


def progress() -> None:
    for job in manager().active("evaluation"):
        text = f"{job.title} · {job.state} · {job.message}"
        st.progress(job.progress, text=text)


live = bool(manager().active("evaluation"))
st.fragment(progress, run_every=POLL_S if live else None)()

found = evaluation.list_evaluations(run.path)
if not found:
    st.info("No evaluations of this run yet: launch one above.")
    st.stop()
names = [item.name for item in found]
chosen = found[names.index(st.selectbox("Evaluation", names, key="compare_eval"))]
st.caption(f"State: {chosen.status()['state']}")

summary = chosen.summary()
if summary.empty:
    st.info("No finished trainings yet.")
else:
    st.plotly_chart(accuracy_figure(summary), key="compare_accuracy")
    st.dataframe(summary, hide_index=True)
cross_test = chosen.cross_test()
if not cross_test.empty:
    st.subheader("Cross-test: train on one side of the pool, test on the other")
    st.dataframe(cross_test, hide_index=True)
