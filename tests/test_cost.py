"""What a run spends (``lifelong_kd.cost``): counted FLOPs against a hand count, images, teacher forwards,
budgets that stop a task, anytime evaluation, intransigence and the TensorBoard log of a real run."""

import json

import pytest
import torch
from conftest import tiny_config
from torch import nn

from lifelong_kd import metrics
from lifelong_kd.cli import main
from lifelong_kd.errors import UsageError
from lifelong_kd.heads import IncrementalClassifier
from lifelong_kd.models import ContinualModel
from lifelong_kd.runner import Runner
from lifelong_kd.strategies import build_strategy
from lifelong_kd.training import TrainConfig

B, D, H = 16, 3 * 8 * 8, 8  # batch, input numbers of the tiny stream's 3x8x8 images, features


def linear_model() -> ContinualModel:
    """flatten -> Linear(D, H) -> ReLU, then the incremental head: every FLOP is a matrix product."""
    torch.manual_seed(0)
    return ContinualModel(nn.Sequential(nn.Flatten(), nn.Linear(D, H), nn.ReLU()), IncrementalClassifier(H, 0))


def run(stream, strategy: str = "finetune", model=None, out=None, **config) -> dict:
    settings = {"lr": 0.05, **({"memory": 12} if strategy in ("er", "derpp") else {})}
    runner = Runner(model or linear_model(), build_strategy(strategy, **settings), stream, tiny_config(**config),
                    progress=False, out_dir=out, tensorboard=out is not None)
    return runner.run()


def hand_step_flops(units: int) -> int:
    """One SGD step on B images with ``units`` head units, multiply-adds counted twice:
    forward 2BDH + 2BHU; backward 2BDH for the first layer's weight (its input needs no gradient), 2BHU for
    the head's weights and 2BHU for the gradient into the features."""
    return 2 * B * D * H + 2 * B * H * units + 2 * B * D * H + 2 * B * H * units + 2 * B * H * units


def test_the_flops_of_a_step_are_the_hand_count_and_every_step_adds_them(tiny_stream):
    doc = run(tiny_stream)
    cost = doc["cost"]
    assert cost["flops_per_step"] == {"main/16+0/2 units": hand_step_flops(2),
                                      "main/16+0/4 units/teacher": hand_step_flops(4),
                                      "main/16+0/6 units/teacher": hand_step_flops(6)}
    for index, task in enumerate(cost["per_task"]):  # 48 images a task, batch 16, 2 epochs: 6 steps
        assert task["steps"] == 6 and task["current_images"] == 96 and task["replayed_images"] == 0
        assert task["train_flops"] == 6 * hand_step_flops(2 * (index + 1))
        assert task["teacher_images"] == 0 and task["memory_bytes"] == 0 and task["task_end_flops"] == 0
    assert cost["total"]["train_flops"] == sum(6 * hand_step_flops(u) for u in (2, 4, 6))
    assert cost["total"]["train_seconds"] == pytest.approx(sum(doc["timing"]["train_seconds"]))
    assert cost["total"]["peak_memory_bytes"] > 0 and cost["budget"] is None


def test_replayed_and_teacher_images_and_the_memory_size_are_counted(tiny_stream):
    er = run(tiny_stream, "er")["cost"]
    # ER replays as many images as the batch's 16, at most the memory's 12, once it holds any (not at step 1)
    assert [task["replayed_images"] for task in er["per_task"]] == [5 * 12, 6 * 12, 6 * 12]
    row_bytes = D + 2 * 8  # a uint8 image, its label and task id as int64 (ER stores no logits)
    assert all(task["memory_bytes"] == 12 * row_bytes for task in er["per_task"])
    lwf = run(tiny_stream, "lwf")["cost"]
    # LwF forwards each current batch through the teacher from the second task on
    assert [task["teacher_images"] for task in lwf["per_task"]] == [0, 96, 96]


def test_icarl_counts_the_feature_forwards_of_its_task_end_work(tiny_stream):
    """After each task iCaRL forwards the task's 48 images (herding) and the 12 of its memory and their 12
    flips (class means) through the backbone, 2 D H FLOPs each; that is all its work outside the steps."""
    runner = Runner(linear_model(), build_strategy("icarl", lr=0.05, memory=12), tiny_stream, tiny_config(),
                    progress=False)
    cost = runner.run()["cost"]
    assert [task["task_end_flops"] for task in cost["per_task"]] == [2 * (48 + 12 + 12) * D * H] * 3


@pytest.mark.parametrize("steps", [5, 7])
def test_a_step_budget_trains_each_task_exactly_that_many_steps(tiny_stream, steps):
    cost = run(tiny_stream, budget_steps=steps)["cost"]
    assert [task["steps"] for task in cost["per_task"]] == [steps] * 3  # 2 epochs would be 6
    assert [task["current_images"] for task in cost["per_task"]] == [steps * 16] * 3
    assert cost["budget"] == {"kind": "steps", "per_task": steps}


def test_a_flop_budget_stops_each_task_at_the_first_step_past_it(tiny_stream):
    budget = 2.5 * hand_step_flops(2)
    cost = run(tiny_stream, budget_flops=budget, epochs=1)["cost"]
    for index, task in enumerate(cost["per_task"]):
        per_step = hand_step_flops(2 * (index + 1))
        assert task["train_flops"] >= budget > task["train_flops"] - per_step
    assert [task["steps"] for task in cost["per_task"]] == [3, 3, 3]


def test_a_budget_limits_the_main_phase_and_the_other_phases_still_count(tiny_stream):
    """LwF's warm-up (the head alone, 2 epochs: 6 steps) runs before its main phase from the second task on:
    the budget's 4 steps are the main phase's, the warm-up's are in the totals."""
    cost = run(tiny_stream, "lwf", budget_steps=4)["cost"]
    assert [task["main_steps"] for task in cost["per_task"]] == [4, 4, 4]
    assert [task["steps"] for task in cost["per_task"]] == [4, 10, 10]
    assert all(task["main_flops"] < task["train_flops"] for task in cost["per_task"][1:])


def test_budgets_need_a_constant_lr_and_only_one_kind():
    with pytest.raises(UsageError, match="--schedule none"):
        TrainConfig(budget_steps=5, schedule="cosine").resolved(100)
    with pytest.raises(UsageError, match="not both"):
        TrainConfig(budget_steps=5, budget_flops=1e9).resolved(100)
    for amount in (float("inf"), float("nan"), 0.0):
        with pytest.raises(UsageError, match="positive finite"):
            TrainConfig(budget_flops=amount).resolved(100)


def test_anytime_points_at_a_task_end_equal_the_task_end_evaluation(tiny_stream):
    doc = run(tiny_stream, eval_every=2)
    points = doc["anytime"]["points"]
    assert doc["anytime"]["every"] == 2
    assert [p["step"] for p in points] == list(range(2, 19, 2))
    assert [p["task"] for p in points] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    matrix = doc["matrices"]["class_il"]
    # finetune does nothing after a task: the evaluation after its last step is the matrix's row
    for point, row in zip(points[2::3], matrix):
        seen = [v for v in row if v is not None]
        assert point["class_il"] == pytest.approx(sum(seen) / len(seen))
    expected = sum(p["class_il"] for p in points) / len(points)
    assert doc["metrics"]["class_il"]["average_anytime_accuracy"] == pytest.approx(expected)
    assert "anytime" not in run(tiny_stream)  # only when asked for


def test_intransigence_against_a_joint_reference_run(tiny_stream):
    joint = run(tiny_stream, "joint")["matrices"]
    runner = Runner(linear_model(), build_strategy("finetune", lr=0.05), tiny_stream, tiny_config(), progress=False,
                    reference=joint)
    doc = runner.run()
    mine = doc["matrices"]["class_il"]
    per_task = [joint["class_il"][k][k] - mine[k][k] for k in range(3)]
    assert doc["metrics"]["class_il"]["intransigence_per_task"] == pytest.approx(per_task)
    assert doc["metrics"]["class_il"]["intransigence"] == pytest.approx(sum(per_task) / 3)
    assert metrics.intransigence(mine, joint["class_il"])[0] == pytest.approx(sum(per_task) / 3)


def test_the_tensorboard_log_of_a_run_reads_back(tiny_stream, tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    doc = run(tiny_stream, out=tmp_path)
    events = accumulator.EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/images_per_second", "class_il/task_0", "task_il/task_2"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [3, 6, 9, 12, 15, 18]  # log_every 3 steps
    assert all(e.value == pytest.approx(0.05) for e in events.Scalars("train/lr"))
    first_task = events.Scalars("class_il/task_0")
    assert [e.step for e in first_task] == [6, 12, 18]
    assert [e.value for e in first_task] == pytest.approx([row[0] for row in doc["matrices"]["class_il"]])
    final = events.Scalars("metrics/class_il/final_accuracy")[-1]
    assert final.value == pytest.approx(doc["metrics"]["class_il"]["final_accuracy"])
    assert json.loads((tmp_path / "results.json").read_text())["cost"] == doc["cost"]


DIGITS = ["run", "--benchmark", "split-digits", "--model", "small-cnn", "--epochs", "1", "--batch-size", "16",
          "--max-train-per-class", "20", "--n-tasks", "2", "--seed", "0", "--quiet"]


def test_the_cli_runs_a_budget_with_anytime_points_a_reference_and_tensorboard(tmp_path):
    """Through ``lifelong-kd run``, into a folder it replaces (--overwrite): every option lands in results.json
    and OUT/tb, and the reference's path is recorded absolute."""
    pytest.importorskip("sklearn")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    assert main([*DIGITS, "--strategy", "joint", "--out", str(tmp_path / "joint")]) == 0
    out = tmp_path / "lwf"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    assert main([*DIGITS, "--strategy", "lwf", "--budget-steps", "3", "--eval-every", "2", "--tensorboard",
                 "--reference", str(tmp_path / "joint"), "--out", str(out), "--overwrite"]) == 0
    doc = json.loads((out / "results.json").read_text())
    assert [task["main_steps"] for task in doc["cost"]["per_task"]] == [3, 3]
    assert doc["cost"]["budget"] == {"kind": "steps", "per_task": 3}
    assert [point["step"] for point in doc["anytime"]["points"]] == list(range(2, doc["cost"]["total"]["steps"] + 1, 2))
    joint = json.loads((tmp_path / "joint" / "results.json").read_text())["matrices"]["class_il"]
    mine = doc["matrices"]["class_il"]
    assert doc["metrics"]["class_il"]["intransigence_per_task"] == pytest.approx(
        [joint[k][k] - mine[k][k] for k in range(2)])
    assert doc["config"]["reference"] == str((tmp_path / "joint").resolve())
    events = accumulator.EventAccumulator(str(out / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("class_il/task_0")] == [
        doc["cost"]["per_task"][0]["steps"], doc["cost"]["total"]["steps"]]
    assert not (out / "old.txt").exists()


def test_a_reference_of_another_stream_is_refused_before_training(tmp_path, capsys):
    pytest.importorskip("sklearn")
    assert main([*DIGITS, "--strategy", "joint", "--out", str(tmp_path / "joint")]) == 0
    five = [*DIGITS[:-5], "--n-tasks", "5", "--seed", "0", "--quiet"]
    assert main([*five, "--strategy", "lwf", "--reference", str(tmp_path / "joint"),
                 "--out", str(tmp_path / "lwf")]) == 2
    assert "has 2 tasks, the runs 5" in capsys.readouterr().err
    assert not (tmp_path / "lwf" / "results.json").exists()
