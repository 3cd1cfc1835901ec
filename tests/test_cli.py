import json
import pickle

import numpy as np
import pytest
from fake_runs import error_line

from lifelong_kd.cli import main

DIGITS_RUN = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--quiet"]


def test_run_end_to_end_prints_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*DIGITS_RUN, "--strategy", "kd-mse", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "class-IL" in printed and "task-IL" in printed and "forgetting" in printed
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "completed" and doc["config"]["strategy"] == "kd-mse"
    assert doc["config"]["hparams"]["lr"] == 0.03 and doc["config"]["hparams"]["alpha"] == 0.15  # kd-mse's defaults
    assert "lr" not in doc["config"]["train"]  # one home per setting
    assert doc["config"]["train"]["amp"] in ("bf16", "off") and doc["config"]["train"]["compile"] == "off"
    assert doc["environment"]["speed_choices"]["amp"].startswith("auto -> ")


def test_demo_writes_results_and_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "1", "--quiet"]) == 0
    assert (out / "forgetting_curves.png").stat().st_size > 10_000
    for strategy in ("finetune", "lwf", "derpp"):
        assert json.loads((out / strategy / "results.json").read_text())["completed_tasks"] == 5
    assert "| derpp M=200 |" in capsys.readouterr().out  # the comparison table


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    for name in ("split-cifar10", "split-cifar100", "finetune", "joint", "lwf", "kd-mse", "reduced-resnet18",
                 "resnet32", "Li & Hoiem"):
        assert name in printed


@pytest.fixture
def occupied(tmp_path):
    out = tmp_path / "occupied"
    out.mkdir()
    (out / "results.json").write_text("keep me")
    return out


@pytest.mark.parametrize("argv,fix", [
    (["run", "--benchmark", "split-cifar10", "--data-root", "/no/such/dir"], "--data-root"),
    ([*DIGITS_RUN, "--n-tasks", "3"], "--n-tasks"),
    ([*DIGITS_RUN, "--strategy", "ewc"], "invalid choice"),
    ([*DIGITS_RUN, "--model", "vgg"], "invalid choice"),
    (["run", "--benchmark", "split-mnist"], "invalid choice"),
    ([*DIGITS_RUN, "--epochs", "0"], "out of range"),
    ([*DIGITS_RUN, "--lr", "-1"], "out of range"),
    ([*DIGITS_RUN, "--temperature", "0"], "out of range"),
    ([*DIGITS_RUN, "--strategy", "finetune", "--alpha", "1"], "takes no option --alpha"),
    ([*DIGITS_RUN, "--schedule", "multistep"], "--milestones"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_overwritten(argv, fix, tmp_path, capsys):
    out = tmp_path / "fresh"
    with_out = argv if "--out" in argv else [*argv, "--out", str(out)]
    try:
        code = main(with_out)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2
    assert fix in error_line(capsys)
    assert not (out / "results.json").exists()


def test_non_empty_output_dir_needs_overwrite(occupied, capsys):
    assert main([*DIGITS_RUN, "--out", str(occupied)]) == 2
    assert "--overwrite" in error_line(capsys)
    assert (occupied / "results.json").read_text() == "keep me"


def test_wrong_data_root_is_reported_before_training(tmp_path, occupied, capsys):
    (tmp_path / "junk").mkdir()
    argv = ["run", "--benchmark", "split-cifar10", "--data-root", str(tmp_path / "junk"), "--out",
            str(tmp_path / "x")]
    assert main(argv) == 2
    assert "--data-root" in error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_split_cifar100_runs_from_official_pickles(tmp_path, capsys):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("test", 1)):
        labels = np.repeat(np.arange(100), per_class)
        batch = {b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
                 b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist()}
        (root / split).write_bytes(pickle.dumps(batch))
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))
    out = tmp_path / "c100"
    argv = ["run", "--benchmark", "split-cifar100", "--n-tasks", "20", "--data-root", str(tmp_path),
            "--model", "small-cnn", "--strategy", "lwf", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["completed_tasks"] == 20 and len(doc["matrices"]["class_il"][0]) == 20


@pytest.mark.parametrize("head", ["multi", "incremental"])
def test_a_first_task_larger_than_the_others_runs_end_to_end(tmp_path, head):
    """--first-task-classes 4 --n-tasks 4 on the digits: tasks of 4, 2, 2 and 2 classes; LwF's one softmax per
    old head follows the tasks' sizes, and so does the multi-head CE."""
    out = tmp_path / "b4"
    argv = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--quiet",
            "--max-train-per-class", "8", "--strategy", "lwf", "--head", head, "--first-task-classes", "4",
            "--n-tasks", "4", "--out", str(out)]
    assert main(argv) == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["first_task_classes"] == 4 and doc["completed_tasks"] == 4
    assert all(value is not None for value in doc["matrices"]["task_il"][-1])
