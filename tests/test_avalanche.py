import functools
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("avalanche")

from avalanche.benchmarks import nc_benchmark  # noqa: E402
from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.models import IncrementalClassifier as AvalancheIncrementalClassifier  # noqa: E402
from avalanche.models import MultiHeadClassifier, MultiTaskModule  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin  # noqa: E402
from avalanche.training.supervised import Naive  # noqa: E402
from conftest import make_tiny_stream, tiny_model  # noqa: E402

from lifelong_kd import metrics  # noqa: E402
from lifelong_kd.augment import BatchAugment  # noqa: E402
from lifelong_kd.avalanche import (  # noqa: E402
    DERPlugin,
    KDMSEPlugin,
    LwFDistillationPlugin,
    accuracy_matrix_from_avalanche,
    er_kd_plugins,
    from_avalanche_benchmark,
    to_avalanche_benchmark,
)
from lifelong_kd.buffer import ReplayBuffer  # noqa: E402
from lifelong_kd.context import Step, TaskContext  # noqa: E402
from lifelong_kd.heads import MultiHeadClassifier as OurMultiHead  # noqa: E402
from lifelong_kd.losses import kl_distillation, mse_distillation  # noqa: E402
from lifelong_kd.models import ContinualModel  # noqa: E402
from lifelong_kd.strategies import build_strategy  # noqa: E402
from lifelong_kd.strategies.base import classification_loss  # noqa: E402


class Recorder(SupervisedPlugin):
    """Placed after our plugin: records the loss it produced and what it was made of."""

    def __init__(self, plugin):
        super().__init__()
        self.plugin = plugin
        self.records = []

    def before_backward(self, strategy, **kwargs):
        self.records.append({
            "experience": strategy.clock.train_exp_counter,
            "loss": strategy.loss.detach().clone(),
            "ce": strategy._criterion(strategy.mb_output, strategy.mb_y).detach(),
            "x": strategy.mb_x.detach().clone(),
            "y": strategy.mb_y.clone(),
            "logits": strategy.mb_output.detach().clone(),
            "teacher": getattr(self.plugin, "teacher", None),
            "memory_logits": _memory_logits(self.plugin),
        })


def _memory_logits(plugin):
    buffer = getattr(plugin, "buffer", None)
    return None if buffer is None or buffer.logits is None else buffer.logits.clone()


def _naive(model, plugins):
    return Naive(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), criterion=nn.CrossEntropyLoss(),
        train_mb_size=8, train_epochs=1, eval_mb_size=64, device="cpu", plugins=plugins,
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]),
    )


def test_lwf_plugin_in_naive_adds_exactly_our_lwf_term():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = tiny_model(stream, head="fixed")
    plugin = LwFDistillationPlugin(alpha=0.7, temperature=2.0)
    recorder = Recorder(plugin)
    strategy = _naive(model, [plugin, recorder])
    benchmark = to_avalanche_benchmark(stream)
    results = []
    for experience in benchmark.train_stream:
        strategy.train(experience)
        results.append(strategy.eval(benchmark.test_stream))
    second = [r for r in recorder.records if r["experience"] == 1]
    assert second and all(r["loss"].item() == pytest.approx(r["ce"].item()) for r in recorder.records[:1])
    ours = build_strategy("lwf", alpha=0.7, temperature=2.0)
    for record in second:
        ctx = TaskContext(stream.tasks[1], stream, model, record["teacher"], 2, 4, torch.device("cpu"), 0, 8,
                          lambda: torch.autocast("cpu", enabled=False), lambda x: x)
        step = Step(record["x"], record["x"], record["y"], len(record["y"]), None, record["logits"])
        assert ours.loss(ctx, step).item() == pytest.approx(record["loss"].item(), rel=1e-5)
    assert plugin.teacher is not None and not plugin.teacher.training
    assert all(not p.requires_grad for p in plugin.teacher.parameters())
    assert plugin.old_classes == [0, 1, 2, 3]
    matrix = accuracy_matrix_from_avalanche(results, 2)
    assert len(matrix) == 2 and all(0.0 <= v <= 100.0 for row in matrix for v in row)
    assert metrics.bwt(matrix) == pytest.approx(matrix[1][0] - matrix[0][0])


def test_kd_mse_plugin_with_avalanche_incremental_classifier():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    backbone = tiny_model(stream).backbone
    model = nn.Sequential(backbone, AvalancheIncrementalClassifier(backbone.out_features, initial_out_features=2))
    plugin = KDMSEPlugin(alpha=2.0)
    recorder = Recorder(plugin)
    strategy = _naive(model, [plugin, recorder])
    for experience in to_avalanche_benchmark(stream).train_stream:
        strategy.train(experience)
    assert model[1].classifier.out_features == 4
    second = [r for r in recorder.records if r["experience"] == 1]
    for record in second:
        with torch.no_grad():
            teacher = record["teacher"](record["x"])
        term = mse_distillation(record["logits"][:, :2], teacher[:, :2])
        assert record["loss"].item() - record["ce"].item() == pytest.approx(2.0 * term.item(), rel=1e-4, abs=1e-6)


class MultiHeadNet(MultiTaskModule):
    """An Avalanche multi-task model: our tiny backbone and Avalanche's ``MultiHeadClassifier``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.classifier = MultiHeadClassifier(backbone.out_features, initial_out_features=2)

    def forward_single_task(self, x, task_label):
        return self.classifier.forward_single_task(self.backbone(x), task_label)


def _task_incremental(stream):
    """The stream as a task-incremental Avalanche benchmark: task labels, class ids from 0 in each task."""
    x = torch.cat([task.train.x for task in stream]).float() / 255
    y = torch.cat([task.train.y for task in stream])
    return nc_benchmark(torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y),
                        n_experiences=len(stream), task_labels=True, shuffle=False,
                        fixed_class_order=list(range(stream.num_classes)), class_ids_from_zero_in_each_exp=True)


def test_lwf_plugin_with_multi_head_classifier_distils_each_old_head():
    stream = make_tiny_stream(num_classes=6, n_tasks=3, per_class=8)
    model = MultiHeadNet(tiny_model(stream).backbone)
    plugin = LwFDistillationPlugin(alpha=0.5, temperature=2.0)
    records = []

    class HeadRecorder(SupervisedPlugin):
        def before_backward(self, strategy, **kwargs):
            x = strategy.mb_x
            with torch.no_grad():
                old_heads = {t: (strategy.model.forward_single_task(x, t), plugin.teacher.forward_single_task(x, t))
                             for t in plugin.old_classes_by_task}
            ce = strategy._criterion(strategy.mb_output, strategy.mb_y)
            records.append((strategy.clock.train_exp_counter, strategy.loss.item(), ce.item(), old_heads))

    strategy = _naive(model, [plugin, HeadRecorder()])
    for experience in _task_incremental(stream).train_stream:
        strategy.train(experience)
    assert set(model.classifier.classifiers) == {"0", "1", "2"}
    assert plugin.old_classes_by_task == {0: [0, 1], 1: [0, 1], 2: [0, 1]}
    last = [r for r in records if r[0] == 2]
    assert last and all(len(heads) == 2 for _, _, _, heads in last)  # tasks 0 and 1 are old in the third
    for _, loss, ce, heads in last:
        expected = sum(kl_distillation(s[:, :2], t[:, :2], 2.0).item() for s, t in heads.values())
        assert loss - ce == pytest.approx(0.5 * expected, rel=1e-4, abs=1e-6)
        assert _runner_multi_head_lwf_term(stream, heads, alpha=0.5) == pytest.approx(loss - ce, rel=1e-4, abs=1e-6)


class PassThroughMultiHead(OurMultiHead):
    """A multi-head layout whose logits are its input features."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _runner_multi_head_lwf_term(stream, heads, alpha):
    """Our runner's LwF term (``ce_plus_distillation`` minus its CE) for a multi-head model whose old
    heads give the recorded (student, teacher) logits: a teacher that returns its input, fed the
    teacher's heads side by side, and a student whose logits are the student's heads side by side."""
    student = torch.cat([s[:, :2] for s, _ in heads.values()], dim=1)
    teacher_logits = torch.cat([t[:, :2] for _, t in heads.values()], dim=1)
    identity = ContinualModel(nn.Identity(), PassThroughMultiHead(student.shape[1]))
    model = ContinualModel(nn.Identity(), PassThroughMultiHead(student.shape[1]))
    n_old = student.shape[1]
    logits = torch.cat([student, torch.zeros(len(student), 2)], dim=1)
    y = torch.full((len(student),), n_old)
    ctx = TaskContext(stream.tasks[2], stream, model, identity, n_old, n_old + 2, torch.device("cpu"), 0, 8,
                      lambda: torch.autocast("cpu", enabled=False), lambda x: x)
    step = Step(teacher_logits, teacher_logits, y, len(y), None, logits)
    strategy = build_strategy("lwf", alpha=alpha, temperature=2.0)
    return (strategy.loss(ctx, step) - classification_loss(ctx, y, logits)).item()


def test_der_plugin_with_multi_head_classifier_replays_with_task_labels():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = MultiHeadNet(tiny_model(stream).backbone)
    plugin = DERPlugin(mem_size=12, alpha=0.5, beta=0.5)
    recorder = DERRecorder(plugin)
    strategy = _naive(model, [plugin, recorder])
    for experience in _task_incremental(stream).train_stream:
        strategy.train(experience)
    assert sorted(plugin.buffer.task[: len(plugin.buffer)].unique().tolist()) == [0, 1]
    assert all(r["loss"].item() > r["ce"].item() for r in recorder.records[1:])


class DERRecorder(Recorder):
    """Also records the replayed rows' logits and the memory as the DER plugin used them."""

    def before_backward(self, strategy, **kwargs):
        super().before_backward(strategy, **kwargs)
        plugin = self.plugin
        self.records[-1].update(
            replay=plugin.sample,
            replay_logits=None if plugin.replay_logits is None else plugin.replay_logits.detach().clone(),
            memory_units=plugin.buffer.logit_units.clone(),
        )


def _device_augment(stream, seed=0):
    """Our runner's batched crop + flip + normalisation for uint8 batches, as a one-argument transform."""
    augment = BatchAugment(stream.mean, stream.std, stream.crop_padding, stream.hflip)
    return functools.partial(augment.train, generator=torch.Generator().manual_seed(seed))


def _der_setup(stream, fresh):
    """(benchmark, plugin options): per-sample augmentation by the benchmark, replayed as stored, or
    (``fresh``) un-augmented uint8 training images that the plugin augments on the device at each draw."""
    if fresh:
        raw = to_avalanche_benchmark(stream, augment=False, normalise_train=False)
        return raw, {"augment": _device_augment(stream)}
    return to_avalanche_benchmark(stream), {}


@pytest.mark.parametrize("name,alpha,beta,fresh", [
    ("der", 0.5, 0.0, False), ("derpp", 0.3, 0.5, False), ("der", 0.0, 0.0, False),
    ("der", 0.5, 0.0, True), ("derpp", 0.3, 0.5, True),
])
def test_der_plugin_in_naive_adds_exactly_our_der_terms(name, alpha, beta, fresh):
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = tiny_model(stream, head="fixed")
    benchmark, options = _der_setup(stream, fresh)
    plugin = DERPlugin(mem_size=12, alpha=alpha, beta=beta, **options)
    recorder = DERRecorder(plugin)
    strategy = _naive(model, [plugin, recorder])
    for experience in benchmark.train_stream:
        strategy.train(experience)
    assert len(plugin.buffer) == 12 and plugin.buffer.seen == 32
    assert plugin.buffer.x.dtype == (torch.uint8 if fresh else torch.float32)  # stored before augmentation
    first, second = recorder.records[:2]
    assert first["replay"] is None and first["loss"].item() == pytest.approx(first["ce"].item())
    assert torch.equal(second["memory_logits"][:8], first["logits"])  # stored as produced, before the update
    ours = build_strategy(name, alpha=alpha, beta=beta, memory=12) if beta else build_strategy(name, alpha=alpha)
    for stored, record in enumerate(recorder.records[1:], start=1):
        replay = record["replay"]
        assert len(record["y"]) == 8  # the criterion saw the current rows only
        assert len(replay) == min(16 if beta else 8, 12, 8 * stored)
        ours.buffer = ReplayBuffer(12)
        ours.buffer.logits, ours.buffer.logit_units = record["memory_logits"], record["memory_units"]
        step = Step(None, None, torch.cat([record["y"], replay.y]), 8, None,
                    torch.cat([record["logits"], record["replay_logits"]]), replay)
        ctx = TaskContext(stream.tasks[record["experience"]], stream, model, None, 0, 4, torch.device("cpu"), 0, 8,
                          lambda: torch.autocast("cpu", enabled=False), lambda x: x)
        assert ours.loss(ctx, step).item() == pytest.approx(record["loss"].item(), rel=1e-5)
        if alpha == 0.0:
            assert record["loss"].item() == pytest.approx(record["ce"].item())


class ForwardRecorder(SupervisedPlugin):
    """Placed after the DER plugin: records the forward batch (current rows, then replayed) it built."""

    def __init__(self, plugin):
        super().__init__()
        self.plugin = plugin
        self.records = []

    def before_forward(self, strategy, **kwargs):
        sample = self.plugin.sample
        self.records.append({
            "raw": self.plugin.current_x.clone(),
            "x": strategy.mb_x.detach().clone(),
            "index": None if sample is None else sample.index.clone(),
            "stored": None if sample is None else self.plugin.buffer.x[sample.index].clone(),
        })


def _replayed_by_slot(record, n_current):
    """The replayed rows of a recorded forward batch, keyed by their memory slot."""
    return {int(slot): row for slot, row in zip(record["index"], record["x"][n_current:])}


def test_der_plugin_augments_replayed_samples_afresh_at_each_draw():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = tiny_model(stream, head="fixed")
    benchmark = to_avalanche_benchmark(stream, augment=False, normalise_train=False)  # uint8, not augmented
    augment = BatchAugment(stream.mean, stream.std, stream.crop_padding, stream.hflip)
    generator = torch.Generator().manual_seed(0)
    states = []

    def recorded_augment(x):
        states.append(generator.get_state())
        return augment.train(x, generator)

    plugin = DERPlugin(mem_size=4, alpha=0.3, augment=recorded_augment)
    recorder = ForwardRecorder(plugin)
    strategy = _naive(model, [plugin, recorder])
    strategy.train(benchmark.train_stream[0])  # 2 steps of 8: the second replays all 4 slots
    task = stream.tasks[1].train
    frozen = plugin.buffer.x.clone()
    for _ in range(2):  # two more draws on one minibatch, memory unchanged: every slot drawn twice
        strategy.mbatch = [task.x[:8].clone(), task.y[:8].clone(), torch.zeros(8, dtype=torch.long)]
        plugin.before_forward(strategy)
        recorder.before_forward(strategy)
    assert torch.equal(plugin.buffer.x, frozen)
    train_images = {bytes(image.numpy()) for task in stream for image in task.train.x}
    assert plugin.buffer.x.dtype == torch.uint8 and all(bytes(x.numpy()) in train_images for x in frozen)
    for record, state in zip(recorder.records[1:], states[1:]):
        # the forward batch is exactly augment(current rows + stored rows), in one call
        expected = augment.train(torch.cat([record["raw"], record["stored"]]), torch.Generator().set_state(state))
        assert torch.equal(record["x"], expected)
    first, second = (_replayed_by_slot(r, 8) for r in recorder.records[-2:])
    assert set(first) == set(second) == {0, 1, 2, 3}
    assert any(not torch.equal(first[slot], second[slot]) for slot in first)  # fresh views of the same samples


def test_der_plugin_with_identity_augment_replays_the_stored_inputs_exactly():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = tiny_model(stream, head="fixed")
    benchmark = to_avalanche_benchmark(stream, augment=False)  # normalised, not augmented
    plugin = DERPlugin(mem_size=12, alpha=0.3, augment=lambda x: x)
    recorder = ForwardRecorder(plugin)
    strategy = _naive(model, [plugin, recorder])
    for experience in benchmark.train_stream:
        strategy.train(experience)
    normalised = {bytes(item[0].numpy()) for experience in benchmark.train_stream for item in experience.dataset}
    replayed = [r for r in recorder.records if r["index"] is not None]
    assert len(replayed) == 3
    for record in replayed:
        assert torch.equal(record["x"], torch.cat([record["raw"], record["stored"]]))
        assert all(bytes(x.numpy()) in normalised for x in record["x"])


def test_der_plugin_forwards_current_and_replayed_samples_together():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = tiny_model(stream, head="fixed")
    batch_sizes = []
    model.register_forward_pre_hook(lambda module, inputs: batch_sizes.append(len(inputs[0])))
    strategy = _naive(model, [DERPlugin(mem_size=12, alpha=0.3)])
    for experience in to_avalanche_benchmark(stream).train_stream:
        strategy.train(experience)
    assert batch_sizes == [8] + [16] * 3  # one forward per step: 8 current (+ 8 replayed once memory has any)


def test_er_kd_plugins_distil_current_and_replayed_rows():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=8)
    model = tiny_model(stream, head="fixed")
    plugins = er_kd_plugins(mem_size=8, alpha=0.5, temperature=2.0)
    recorder = Recorder(plugins[1])
    strategy = _naive(model, [*plugins, recorder])
    for experience in to_avalanche_benchmark(stream).train_stream:
        strategy.train(experience)
    second = [r for r in recorder.records if r["experience"] == 1]
    assert second and all(len(r["y"]) == 16 for r in second)  # 8 current + 8 replayed
    for record in second:
        with torch.no_grad():
            teacher = record["teacher"](record["x"])
        term = kl_distillation(record["logits"][:, :2], teacher[:, :2], 2.0)
        assert record["loss"].item() - record["ce"].item() == pytest.approx(0.5 * term.item(), rel=1e-4, abs=1e-6)


def test_adapters_round_trip_keep_classes_sizes_and_order():
    stream = make_tiny_stream(num_classes=6, n_tasks=3, per_class=5)
    back = from_avalanche_benchmark(to_avalanche_benchmark(stream))
    assert back.class_order == tuple(range(6)) and len(back) == 3
    for ours, theirs in zip(stream, back):
        assert ours.classes == theirs.classes
        assert torch.equal(ours.train.x, theirs.train.x) and torch.equal(ours.train.y, theirs.train.y)
        assert torch.equal(ours.test.x, theirs.test.x) and torch.equal(ours.test.y, theirs.test.y)


def test_avalanche_class_order_becomes_the_stream_order():
    stream = make_tiny_stream(num_classes=4, n_tasks=2, per_class=3)
    x = torch.cat([t.train.x for t in stream])
    y = torch.cat([t.train.y for t in stream])
    benchmark = nc_benchmark(torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(x, y),
                             n_experiences=2, task_labels=False, fixed_class_order=[3, 1, 0, 2])
    converted = from_avalanche_benchmark(benchmark)
    assert converted.class_order == (1, 3, 0, 2)  # each experience's classes, sorted, in experience order
    first = converted.tasks[0]
    original = {1: 0, 3: 1}
    for image, label in zip(first.train.x, first.train.y):
        assert any(torch.equal(image, xi) and original[int(yi)] == int(label) for xi, yi in zip(x, y))


def test_import_without_avalanche_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "avalanche.benchmarks", None)
    monkeypatch.delitem(sys.modules, "lifelong_kd.avalanche", raising=False)
    with pytest.raises(ImportError, match=re.escape("lifelong_kd[avalanche]")):
        importlib.import_module("lifelong_kd.avalanche")
    monkeypatch.undo()
    importlib.import_module("lifelong_kd.avalanche")


def test_readme_avalanche_example_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Using with Avalanche", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert len(namespace["matrix"]) == 5
