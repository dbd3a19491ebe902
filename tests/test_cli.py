import json

import numpy as np
import pandas as pd
import pytest

from coreset_core.__main__ import main


def finished_runs(out):
    if not out.exists():
        return []
    return [
        p
        for p in out.iterdir()
        if (p / "status.json").exists()
        and json.loads((p / "status.json").read_text())["state"] == "finished"
    ]


def test_select_then_export_on_real_cifar_images(cifar_folder, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(
        [
            "select",
            "--data",
            str(cifar_folder),
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--fraction",
            "0.25",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    run_dir = finished_runs(out)[0]
    table = pd.read_csv(run_dir / "selection_lowest_0.25.csv")
    assert (table["decision"] == "keep").sum() == 30

    assert (
        main(["export", str(run_dir), "--count", "50", "--strategy", "balanced"]) == 0
    )
    table = pd.read_csv(run_dir / "selection_balanced_n50.csv")
    assert (table["decision"] == "keep").sum() == 50
    assert "selection_balanced_n50.csv" in capsys.readouterr().out


def bad_npz(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((3, 8, 8), np.uint8))
    return path


def empty_folder(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path


def corrupt_folder(tmp_path):
    path = tmp_path / "corrupt" / "dogs"
    path.mkdir(parents=True)
    (path / "rex.jpg").write_bytes(b"not a jpeg")
    return path.parent


@pytest.mark.parametrize(
    "args, message",
    [
        (lambda t: ["--data", str(t / "missing")], "no such file or folder"),
        (lambda t: ["--data", str(empty_folder(t))], "no images found"),
        (lambda t: ["--data", str(corrupt_folder(t))], "dogs/rex.jpg"),
        (lambda t: ["--data", str(bad_npz(t))], "x_train"),
        (lambda t: ["--fraction", "0"], "fraction"),
        (lambda t: ["--fraction", "1.5"], "fraction"),
        (lambda t: ["--epochs", "0"], "epochs"),
    ],
)
def test_bad_input_exits_non_zero_and_leaves_no_run(tmp_path, capsys, args, message):
    out = tmp_path / "runs"
    code = main(["select", *args(tmp_path), "--out", str(out)])
    assert code != 0
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_non_finite_loss_exits_non_zero_and_marks_the_run_failed(
    tmp_path, capsys, monkeypatch
):
    def nan_forward(self, views_a, views_b):
        projections = self.project(views_a)
        return projections.sum() * float("inf"), projections[:, 0].detach()

    monkeypatch.setattr("coreset_core.contrastive.SimCLR.forward", nan_forward)
    out = tmp_path / "runs"
    code = main(
        ["select", "--pool-size", "64", "--batch-size", "32", "--out", str(out)]
    )
    assert code == 1
    assert "loss became" in capsys.readouterr().err
    assert finished_runs(out) == []
    status = json.loads(next(out.iterdir()).joinpath("status.json").read_text())
    assert status["state"] == "failed"


def test_resume_from_the_command_line(tmp_path, finished_run):
    import shutil

    from coreset_core import runs

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    (copy / "scores.csv").unlink()
    runs.write_status(copy, "interrupted", 2, 2)
    assert main(["select", "--resume", str(copy)]) == 0
    assert runs.Run(copy).status()["state"] == "finished"


def test_export_of_a_missing_run_is_an_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--fraction", "0.3"]) != 0


def test_evaluate_from_the_command_line(tmp_path, finished_run):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    args = [
        "evaluate",
        str(run_dir),
        "--subsets",
        "coreset,random",
        "--fractions",
        "0.5",
        "--seeds",
        "1",
        "--cross-test",
        "",
        "--backbone",
        "resnet20",
        "--schedule",
        "fast",
        "--epochs",
        "1",
    ]
    assert main(args) == 0
    results = pd.read_csv(next((run_dir / "evaluations").iterdir()) / "results.csv")
    assert sorted(results["subset"]) == ["coreset", "random"]
    assert results["accuracy"].between(0, 1).all()

    # A second call finds both trainings done and repeats neither.
    assert main(args) == 0
    again = pd.read_csv(next((run_dir / "evaluations").iterdir()) / "results.csv")
    assert len(again) == 2
