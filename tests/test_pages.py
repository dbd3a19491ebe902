"""Every page under AppTest, against a real finished run and real jobs."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from coreset_core.catalog import CATALOG_FILE, Catalog
from coreset_core.layout import load_layout
from tests.conftest import ROOT

# the app's fixtures (app_runs, app_env) live beside conftest

TIMEOUT = 60


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / name), default_timeout=TIMEOUT)


def wait_for(check: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


def wait_for_job(runs_dir: Path, id: str, timeout: float = 120) -> str:
    catalog = Catalog(runs_dir / CATALOG_FILE)
    wait_for(lambda: catalog.get(id).state not in ("queued", "running"), timeout)
    return catalog.get(id).state


def test_app_frame_shows_runs_folder_and_data_page(app_env: Path) -> None:
    at = page("app.py").run()
    assert not at.exception
    assert any(str(app_env.parent) in c.value for c in at.sidebar.caption)
    assert at.title[0].value == "Data"


def test_data_page_builtin_sample(app_env: Path) -> None:
    at = page("pages/data.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Examples"] == "5,000"
    assert metrics["Test examples"] == "1,000"
    assert metrics["Classes"] == "10"
    assert at.get("vega_lite_chart")  # the class histogram
    assert len(at.get("image")) == 48


def test_data_page_folder_and_a_bad_path(app_env: Path, cifar_folder: Path) -> None:
    at = page("pages/data.py").run()
    at.radio(key="data_kind").set_value("Image folder or archive").run()
    assert at.info  # asks for a path first
    at.text_input(key="data_path").set_value(str(cifar_folder)).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Examples"] == "120"

    at.text_input(key="data_path").set_value(str(cifar_folder / "nope")).run()
    assert "no such file or folder" in at.error[0].value


def test_data_page_grayscale_npz(app_env: Path, shared_datasets: Path) -> None:
    at = page("pages/data.py").run()
    at.radio(key="data_kind").set_value(".npz file").run()
    at.text_input(key="data_path").set_value(str(shared_datasets / "mnist.npz")).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Examples"] == "60,000"
    assert metrics["Image (C x H x W)"] == "1 x 28 x 28"
    assert len(at.get("image")) == 48


def test_select_page_launches_a_run_and_charts_it(app_env: Path) -> None:
    at = page("pages/select.py").run()
    assert not at.exception
    at.number_input(key="select_epochs").set_value(2)
    at.number_input(key="select_batch").set_value(64)
    at.number_input(key="select_pool").set_value(200)
    at.selectbox(key="select_device").set_value("cpu")
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception and not at.error
    id = at.session_state["select_job"]

    assert wait_for_job(app_env.parent, id) == "finished"
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 3  # loss, similarity bands, trajectories
    assert "finished · epoch 2/2" in at.get("progress")[0].proto.text


def test_select_page_cancels_and_resumes_a_run(app_env: Path) -> None:
    at = page("pages/select.py").run()
    at.number_input(key="select_epochs").set_value(30)
    at.number_input(key="select_batch").set_value(64)
    at.number_input(key="select_pool").set_value(200)
    at.selectbox(key="select_device").set_value("cpu")
    next(b for b in at.button if b.label == "Launch").click().run()
    id = at.session_state["select_job"]
    catalog = Catalog(app_env.parent / CATALOG_FILE)
    wait_for(lambda: catalog.get(id).epoch >= 1)

    # while it runs: progress with time left, and a cancel button
    at.run()
    text = at.get("progress")[0].proto.text
    assert text.startswith("running · epoch") and "left" in text
    at.button(key="select_cancel").click().run()
    assert wait_for_job(app_env.parent, id) == "cancelled"

    # a cancelled run resumes from its last finished epoch
    at.run()
    at.button(key="select_resume").click().run()
    assert catalog.get(id).state in ("queued", "running")
    at.button(key="select_cancel").click().run()
    assert wait_for_job(app_env.parent, id) == "cancelled"
    assert not at.exception


def test_select_page_rejects_a_bad_config(app_env: Path) -> None:
    at = page("pages/select.py").run()
    at.selectbox(key="select_device").set_value("cuda")
    next(b for b in at.button if b.label == "Launch").click().run()
    if importlib.util.find_spec("torch") and __import__("torch").cuda.is_available():
        pytest.skip("CUDA is present, so asking for it is not an error here")
    assert "CUDA is not available" in at.error[0].value


def test_explore_page_computes_the_map_in_the_background(app_env: Path) -> None:
    at = page("pages/explore.py").run()
    at.selectbox(key="explore_run").set_value(app_env.name).run()
    assert not at.exception
    assert "UMAP" in at.get("progress")[0].proto.text
    wait_for(lambda: load_layout(app_env) is not None, timeout=180)
    at.run()
    assert not at.exception
    # the map and the example's trajectory
    assert len(at.get("plotly_chart")) == 2
    # the two galleries and the single example
    assert len(at.get("image")) == 16 + 16 + 1
    at.radio(key="explore_colour").set_value("label").run()
    at.number_input(key="explore_index").set_value(7).run()
    assert not at.exception
    captions = [caption for image in at.get("image") for caption in image.captions]
    assert any(caption.startswith("#7 ") for caption in captions)


def test_export_page_tables_and_downloads(app_env: Path) -> None:
    at = page("pages/export.py").run()
    at.selectbox(key="export_run").set_value(app_env.name).run()
    assert not at.exception
    assert at.metric[0].value == "90 of 300"  # the run's fraction, 0.3
    labels = [button.label for button in at.download_button]
    assert labels == ["Download the selection (CSV)", "Download the scores (CSV)"]
    at.selectbox(key="export_strategy").set_value("balanced")
    at.slider(key="export_fraction").set_value(0.5)
    at.slider(key="export_window").set_value((2, 2)).run()
    assert not at.exception
    assert at.metric[0].value == "150 of 300"
    table = at.dataframe[0].value
    assert list(table.columns) == ["index", "id", "label", "score", "rank", "decision"]


def test_compare_page_without_the_evaluation_module(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def hide(name: str, *args: object) -> object:
        return None if name == "coreset_core.evaluation" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    at = page("pages/compare.py").run()
    assert not at.exception
    assert "Evaluation not available" in at.info[0].value


def test_compare_page_runs_a_small_evaluation(app_env: Path) -> None:
    at = page("pages/compare.py").run()
    at.selectbox(key="compare_run").set_value(app_env.name).run()
    assert not at.exception
    at.multiselect(key="compare_subsets").set_value(["coreset", "random"])
    at.multiselect(key="compare_fractions").set_value([0.5])
    at.multiselect(key="compare_cross").set_value([])
    at.selectbox(key="compare_backbone").set_value("resnet20")
    at.number_input(key="compare_epochs").set_value(1)
    next(b for b in at.button if b.label == "Launch evaluation").click().run()
    assert not at.exception and not at.error

    id = f"evaluation-{app_env.name}-resnet20-fast-1ep"
    assert wait_for_job(app_env.parent, id, timeout=180) == "finished"
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    summary = at.dataframe[0].value
    assert sorted(summary["subset"]) == ["coreset", "random"]
