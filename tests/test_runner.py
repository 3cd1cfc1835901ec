import gc
import json
import warnings
import weakref

import numpy as np
import pytest
import torch
from conftest import make_tiny_stream, tiny_config, tiny_model

from lifelong_kd.runner import Runner
from lifelong_kd.settings import training_settings
from lifelong_kd.strategies import build_strategy
from lifelong_kd.strategies.base import Strategy
from lifelong_kd.strategies.finetune import Finetune
from lifelong_kd.training import NonFiniteLossError, TrainConfig, too_small_to_step


def run(strategy, stream, tmp_path=None, head="incremental", seed=0, **config):
    model = tiny_model(stream, head, seed)
    runner = Runner(model, strategy, stream, tiny_config(seed=seed, **config), out_dir=tmp_path, progress=False)
    return runner, runner.run()


def test_end_to_end_results_file(tiny_stream, tmp_path):
    _, doc = run(build_strategy("lwf", lr=0.05), tiny_stream, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    assert saved["status"] == "completed" and saved["completed_tasks"] == 3
    for setting in ("class_il", "task_il"):
        matrix = saved["matrices"][setting]
        assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
        assert set(saved["metrics"][setting]) >= {"final_accuracy", "average_incremental_accuracy", "forgetting", "bwt"}
    class_il, task_il = saved["matrices"]["class_il"], saved["matrices"]["task_il"]
    assert class_il[0][1:] == [None, None]  # future tasks are not evaluated
    assert task_il[0][1:] == [None, None]
    assert task_il[2][2] >= 90.0  # the synthetic classes are easy: the current task is learnt
    assert saved["config"]["strategy"] == "lwf" and saved["config"]["class_order"] == [0, 1, 2, 3, 4, 5]
    assert saved["config"]["hparams"]["alpha"] == 3.0 and saved["config"]["hparams"]["lr"] == 0.05
    assert "lr" not in saved["config"]["train"] and saved["config"]["head"] == "incremental"
    assert set(saved["environment"]) >= {"torch", "python", "lifelong_kd", "device"}
    assert len(saved["timing"]["train_seconds"]) == 3 and min(saved["timing"]["images_per_second"]) > 0


def test_task_il_is_class_il_restricted_to_the_task(tiny_stream):
    _, doc = run(Finetune(lr=0.05), tiny_stream)
    for c_row, t_row in zip(doc["matrices"]["class_il"], doc["matrices"]["task_il"]):
        for c, t in zip(c_row, t_row):
            assert t is None or t >= c


def _weights(runner):
    return [p.detach().clone() for p in runner.model.parameters()]


def test_same_seed_gives_identical_results():
    stream = make_tiny_stream()
    runner_a, first = run(build_strategy("lwf", lr=0.05), stream, seed=3)
    runner_b, second = run(build_strategy("lwf", lr=0.05), stream, seed=3)
    assert first["matrices"] == second["matrices"]
    assert all(torch.equal(a, b) for a, b in zip(_weights(runner_a), _weights(runner_b)))
    runner_c, _ = run(build_strategy("lwf", lr=0.05), stream, seed=4)
    assert not all(torch.equal(a, c) for a, c in zip(_weights(runner_a), _weights(runner_c)))


class TeacherSpy(Strategy):
    """Checks the teacher invariants from inside the training loop."""

    name = "spy"
    settings = training_settings(0.05, momentum=0.9)

    def __init__(self):
        super().__init__()
        self.teachers = []
        self.steps_with_teacher = 0

    def before_task(self, ctx):
        self.snapshot = None
        if ctx.teacher is not None:
            self.teachers.append(weakref.ref(ctx.teacher))
            self.snapshot = [p.detach().clone() for p in ctx.teacher.parameters()]
            self.buffers = [b.detach().clone() for b in ctx.teacher.buffers()]

    def loss(self, ctx, step):
        base = super().loss(ctx, step)
        if ctx.teacher is None:
            return base
        assert not ctx.teacher.training
        assert all(not p.requires_grad for p in ctx.teacher.parameters())
        teacher_logits = ctx.teacher_logits(step.x)
        assert teacher_logits is ctx.teacher_logits(step.x)  # once per step
        assert teacher_logits.shape[1] == ctx.n_old
        self.steps_with_teacher += 1
        # a term through the teacher's output must not reach its parameters
        return base + 0.1 * (step.logits[:, : ctx.n_old] - teacher_logits).pow(2).mean()

    def after_task(self, ctx):
        if ctx.teacher is None:
            return
        assert all(torch.equal(a, b) for a, b in zip(self.snapshot, ctx.teacher.parameters()))
        assert all(torch.equal(a, b) for a, b in zip(self.buffers, ctx.teacher.buffers()))
        assert all(p.grad is None for p in ctx.teacher.parameters())
        assert not torch.equal(self.snapshot[0], next(ctx.model.parameters()).detach())


def test_teacher_is_frozen_and_one_alive(tiny_stream):
    spy = TeacherSpy()
    runner, _ = run(spy, tiny_stream)
    assert spy.steps_with_teacher > 0 and len(spy.teachers) == 2
    gc.collect()
    alive = [ref() for ref in spy.teachers if ref() is not None]
    assert alive == []  # the runner holds only the snapshot of the last task
    assert runner.teacher is not None and runner.teacher is not runner.model


def test_fixed_head_evaluates_the_next_task_for_fwt_and_the_future_on_request(tiny_stream):
    """Row i holds the seen tasks and, with a fixed head, task i+1 in task-IL (FWT's R[i, i+1]);
    class-IL never scores a task whose classes are not seen; --eval-future fills every task-IL cell."""
    _, doc = run(Finetune(lr=0.05), tiny_stream, head="fixed")
    task_il, class_il = doc["matrices"]["task_il"], doc["matrices"]["class_il"]
    assert [[v is not None for v in row] for row in task_il] == [[True, True, False], [True] * 3, [True] * 3]
    assert [[v is not None for v in row] for row in class_il] == [[True, False, False], [True, True, False], [True] * 3]
    assert len(doc["baseline_task_il"]) == 3
    expected = np.mean([task_il[0][1] - doc["baseline_task_il"][1], task_il[1][2] - doc["baseline_task_il"][2]])
    assert doc["metrics"]["task_il"]["fwt"] == pytest.approx(expected)
    _, future = run(Finetune(lr=0.05), tiny_stream, head="fixed", eval_future=True)
    assert all(v is not None for row in future["matrices"]["task_il"] for v in row)
    assert future["matrices"]["task_il"][:2] != task_il[:2]


def test_growing_head_evaluates_only_the_seen_tasks(tiny_stream):
    _, doc = run(Finetune(lr=0.05), tiny_stream)
    for name in ("class_il", "task_il"):
        assert [[v is not None for v in row] for row in doc["matrices"][name]] == [
            [True, False, False], [True, True, False], [True, True, True]]


def test_multi_head_trains_only_the_current_head(tiny_stream):
    _, doc = run(Finetune(lr=0.05), tiny_stream, head="multi")
    task_il = doc["matrices"]["task_il"]
    assert task_il[0][0] >= 90.0 and task_il[2][2] >= 90.0


class ExplodesInTaskTwo(Finetune):
    name = "explodes"

    def loss(self, ctx, step):
        value = super().loss(ctx, step)
        return value * float("nan") if ctx.task.index == 1 else value


def test_nan_loss_stops_and_keeps_finished_tasks(tiny_stream, tmp_path):
    with pytest.raises(NonFiniteLossError, match="task 2"):
        run(ExplodesInTaskTwo(), tiny_stream, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["completed_tasks"] == 1
    assert saved["status"].startswith("failed")
    assert saved["matrices"]["class_il"][0][0] > 50.0


def test_joint_trains_on_every_seen_task(tiny_stream):
    _, joint = run(build_strategy("joint", lr=0.05), tiny_stream)
    _, finetune = run(Finetune(lr=0.05), tiny_stream)
    assert joint["metrics"]["class_il"]["final_accuracy"] > finetune["metrics"]["class_il"]["final_accuracy"] + 20


def test_compile_trains_like_eager_and_keeps_the_model_plain(tiny_stream):
    """--compile: the compiled backbone shares the model's parameters; training follows eager
    training up to float reordering, and the model and its teacher stay ordinary modules. The FLOPs
    counted through the compiled backbone are the eager ones."""
    runs, costs = {}, {}
    for compile_ in ("off", "on"):
        model = tiny_model(tiny_stream)
        runner = Runner(model, build_strategy("lwf", lr=0.05), tiny_stream, tiny_config(compile=compile_),
                        progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the FLOP counter's module hooks warn nothing
            doc = runner.run()
        runs[compile_] = (model.state_dict(), doc["matrices"]["class_il"], runner)
        costs[compile_] = doc["cost"]["flops_per_step"]
    assert costs["on"] == costs["off"] and len(costs["on"]) == 5
    (eager_state, eager_matrix, _), (compiled_state, compiled_matrix, runner) = runs["off"], runs["on"]
    assert compiled_state.keys() == eager_state.keys()  # no _orig_mod prefixes in what users save
    for key, value in eager_state.items():
        assert torch.allclose(compiled_state[key].float(), value.float(), rtol=1e-3, atol=1e-4), key
    compiled_cells, eager_cells = np.array(compiled_matrix, dtype=float), np.array(eager_matrix, dtype=float)
    assert np.allclose(compiled_cells, eager_cells, atol=2.0, equal_nan=True)
    assert runner.train_backbone is not runner.model.backbone and runner.teacher_backbone is not runner.teacher.backbone
    assert type(runner.teacher) is type(runner.model) and not runner.teacher.training


def test_class_il_ignores_the_units_of_unseen_classes(tiny_stream):
    """A fixed head whose unseen units (classes 2..5) have huge biases: class-IL takes the arg-max over
    the seen units only, so the accuracy is that of logits[:, :2], computed here by hand; the same holds
    for a strategy's extra scores (iCaRL's NME)."""
    model = tiny_model(tiny_stream, head="fixed")
    with torch.no_grad():
        model.head.blocks[0].bias[2:] = 1e6
    runner = Runner(model, Finetune(lr=0.05), tiny_stream, tiny_config(), progress=False)
    x, y = runner.test_sets[0]
    with torch.no_grad():
        model.eval()
        expected = 100.0 * (model(runner.augment.eval(x))[:, :2].argmax(1) == y).float().mean().item()
    assert model(runner.augment.eval(x)).argmax(1).min() >= 2  # over all units, nothing would be right
    row = runner.evaluate(2, [0])
    assert row["class_il"][0] == pytest.approx(expected) and expected > 25.0
    runner.strategy.eval_scores = lambda features: {"nme": model.head(features)}
    assert runner.evaluate(2, [0])["nme_class_il"][0] == pytest.approx(expected)


@pytest.mark.parametrize(("batch_size", "sizes"), [(20, [20, 20]), (28, [28, 20]), (64, [48])])
def test_an_epochs_tiny_final_batch_is_skipped(tiny_stream, batch_size, sizes):
    """48 images a task: a final batch under half the batch size (8 of 20) takes no step; 20 of 28 does,
    and an epoch whose only batch is small still trains."""
    strategy = build_strategy("finetune")
    steps: list[int] = []
    strategy.after_step = lambda ctx, step: steps.append(len(step.y))
    config = TrainConfig(epochs=1, batch_size=batch_size, amp="off", compile="off")
    Runner(tiny_model(tiny_stream), strategy, tiny_stream, config, progress=False).run()
    assert steps == sizes * len(tiny_stream)
    assert too_small_to_step(1, 32, first=True) and not too_small_to_step(16, 32, first=False)
    assert too_small_to_step(15, 32, first=False) and not too_small_to_step(15, 32, first=True)
