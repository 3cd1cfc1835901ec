"""The LUCIR, PODNet and BiC plugins in Avalanche's Naive add exactly our strategies' terms."""

import pytest
import torch

pytest.importorskip("avalanche")

from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin  # noqa: E402
from avalanche.training.supervised import Naive  # noqa: E402
from conftest import make_tiny_stream, tiny_model  # noqa: E402
from torch import nn  # noqa: E402

from lifelong_kd.avalanche import to_avalanche_benchmark  # noqa: E402
from lifelong_kd.avalanche_features import BiCDistillationPlugin, LessForgetPlugin, PODPlugin  # noqa: E402
from lifelong_kd.context import Step, TaskContext  # noqa: E402
from lifelong_kd.options import FeatureDistillation  # noqa: E402
from lifelong_kd.strategies import build_strategy  # noqa: E402
from lifelong_kd.strategies.bic import old_share_weighted_loss  # noqa: E402


class Recorder(SupervisedPlugin):
    """After the plugin under test: the loss it left, the CE, and what the student's forward captured."""

    def __init__(self, plugin):
        super().__init__()
        self.plugin, self.records = plugin, []

    def before_backward(self, strategy, **kwargs):
        self.records.append({
            "experience": strategy.clock.train_exp_counter, "loss": strategy.loss.detach().clone(),
            "ce": strategy._criterion(strategy.mb_output, strategy.mb_y).detach(),
            "x": strategy.mb_x.detach().clone(), "y": strategy.mb_y.clone(),
            "logits": strategy.mb_output.detach().clone(), "teacher": self.plugin.teacher,
            "captured": {k: v.detach().clone() for k, v in self.plugin.captured.items()},
        })


def train(model, plugin, n_tasks=3):
    stream = make_tiny_stream(num_classes=6, n_tasks=n_tasks, per_class=8)
    recorder = Recorder(plugin)
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=8, train_epochs=1, eval_mb_size=64,
                     device="cpu", plugins=[plugin, recorder],
                     evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]))
    for experience in to_avalanche_benchmark(stream).train_stream:
        strategy.train(experience)
    return stream, recorder.records


def context(stream, task, model, teacher):
    n_old = 2 * task
    return TaskContext(stream.tasks[task], stream, model, teacher, n_old, n_old + 2, torch.device("cpu"), 0, 8,
                       lambda: torch.autocast("cpu", enabled=False), lambda x: x)


def test_less_forget_plugin_adds_exactly_lucirs_term():
    stream = make_tiny_stream(num_classes=6, n_tasks=3, per_class=8)
    model = tiny_model(stream, head="fixed", last_relu=False)
    stream, records = train(model, LessForgetPlugin(lambda_base=5.0))
    assert all(r["loss"] == r["ce"] for r in records if r["experience"] == 0)
    later = [r for r in records if r["experience"] > 0]
    assert {r["experience"] for r in later} == {1, 2}
    for r in later:
        ctx = context(stream, r["experience"], model, r["teacher"])
        step = Step(r["x"], r["x"], r["y"], len(r["y"]), r["captured"]["features"], r["logits"])
        term = FeatureDistillation(5.0).loss(ctx, step)  # the adaptive weight 5 * sqrt(n_old / 2)
        assert term.item() > 1e-4
        assert (r["loss"] - r["ce"]).item() == pytest.approx(term.item(), rel=1e-4)


def test_pod_plugin_adds_exactly_podnets_distillation_terms():
    stream = make_tiny_stream(num_classes=6, n_tasks=3, per_class=8)
    model = tiny_model(stream, head="fixed", last_relu=False)
    stages = ("backbone.body.2", "backbone.body.5")  # the small CNN's two stage outputs
    stream, records = train(model, PODPlugin(stages))
    podnet = build_strategy("podnet", memory=12)
    for r in [r for r in records if r["experience"] > 0]:
        ctx = context(stream, r["experience"], model, r["teacher"])
        maps = [r["captured"][name] for name in stages]
        step = Step(r["x"], r["x"], r["y"], len(r["y"]), r["captured"]["features"], r["logits"], stages=maps)
        term = podnet.distillation(ctx, step)
        assert term.item() > 1e-4
        assert (r["loss"] - r["ce"]).item() == pytest.approx(term.item(), rel=1e-4)


def test_bic_plugin_turns_the_ce_into_bics_weighted_loss():
    stream = make_tiny_stream(num_classes=6, n_tasks=3, per_class=8)
    model = tiny_model(stream, head="fixed")
    stream, records = train(model, BiCDistillationPlugin(temperature=2.0))
    for r in [r for r in records if r["experience"] > 0]:
        ctx = context(stream, r["experience"], model, r["teacher"])
        # a fixed head: our CE spans every unit, as Avalanche's criterion does
        step = Step(r["x"], r["x"], r["y"], len(r["y"]), None, r["logits"])
        assert r["loss"].item() == pytest.approx(old_share_weighted_loss(ctx, step, 2.0).item(), rel=1e-5)
        assert r["loss"].item() != pytest.approx(r["ce"].item(), rel=1e-3)
