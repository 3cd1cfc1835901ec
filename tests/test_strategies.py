import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model

from lifelong_kd.context import Step, TaskContext
from lifelong_kd.errors import UsageError
from lifelong_kd.losses import kl_distillation
from lifelong_kd.models import frozen_copy
from lifelong_kd.strategies import STRATEGIES, build_strategy


def context_for_task(stream, index, teacher):
    model = tiny_model(stream)
    model.grow(sum(len(t.classes) for t in stream.tasks[: index + 1]))
    n_old = sum(len(t.classes) for t in stream.tasks[:index])
    return TaskContext(
        stream.tasks[index], stream, model, teacher, n_old, n_old + len(stream.tasks[index].classes),
        torch.device("cpu"), 0, 32, lambda: torch.autocast("cpu", enabled=False), lambda x: x.float(),
    )


def step_of(x, y, logits):
    return Step(x, x, y, len(y), torch.zeros(len(y), 4), logits)


def test_lwf_loss_is_ce_plus_alpha_kl_on_old_units(tiny_stream):
    teacher_model = tiny_model(tiny_stream, seed=1)
    teacher_model.grow(2)
    ctx = context_for_task(tiny_stream, 1, frozen_copy(teacher_model))
    x = torch.randn(5, 3, 8, 8)
    y = torch.tensor([2, 3, 2, 3, 2])
    logits = torch.randn(5, 4)
    strategy = build_strategy("lwf", alpha=0.7, temperature=3.0)
    with torch.no_grad():
        teacher_logits = teacher_model.eval()(x)
    expected = F.cross_entropy(logits, y) + 0.7 * kl_distillation(logits[:, :2], teacher_logits, 3.0)
    assert strategy.loss(ctx, step_of(x, y, logits)).item() == pytest.approx(expected.item(), rel=1e-6)
    # only the old units are distilled: the new units' logits do not enter the KD term
    shifted = logits.clone()
    shifted[:, 2:] += 5.0
    kd_only = strategy.loss(ctx, step_of(x, y, shifted)) - F.cross_entropy(shifted, y)
    assert kd_only.item() == pytest.approx((expected - F.cross_entropy(logits, y)).item(), rel=1e-5)


def test_kd_mse_loss_by_hand(tiny_stream):
    teacher_model = tiny_model(tiny_stream, seed=1)
    teacher_model.grow(2)
    ctx = context_for_task(tiny_stream, 1, frozen_copy(teacher_model))
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([2, 3, 3, 2])
    logits = torch.randn(4, 4)
    with torch.no_grad():
        t = teacher_model.eval()(x)
    expected = F.cross_entropy(logits, y) + 2.0 * ((logits[:, :2] - t) ** 2).mean()
    loss = build_strategy("kd-mse", alpha=2.0).loss(ctx, step_of(x, y, logits))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_first_task_has_no_distillation(tiny_stream):
    ctx = context_for_task(tiny_stream, 0, None)
    logits = torch.randn(3, 2)
    y = torch.tensor([0, 1, 1])
    for name in ("lwf", "kd-mse"):
        loss = build_strategy(name).loss(ctx, step_of(torch.randn(3, 3, 8, 8), y, logits))
        assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item())


def test_lwf_warmup_trains_only_new_units(tiny_stream):
    from conftest import tiny_config

    from lifelong_kd.phase_training import train_phase
    from lifelong_kd.runner import Runner

    model = tiny_model(tiny_stream)
    strategy = build_strategy("lwf", warmup_epochs=2, lr=0.05)
    runner = Runner(model, strategy, tiny_stream, tiny_config(), progress=False)
    model.grow(2)
    runner.teacher = frozen_copy(model)
    model.grow(4)
    ctx = TaskContext(tiny_stream.tasks[1], tiny_stream, model, runner.teacher, 2, 4,
                      runner.device, 0, 16, runner.autocast, runner.augment.eval)
    first = TaskContext(tiny_stream.tasks[0], tiny_stream, model, None, 0, 2,
                        runner.device, 0, 16, runner.autocast, runner.augment.eval)
    assert [phase.name for phase in strategy.phases(first, 1)] == ["main"]  # nothing to warm up in task 1
    warmup, main = strategy.phases(ctx, 1)
    assert (warmup.name, warmup.epochs, warmup.weight_decay, warmup.freeze_backbone) == ("warm-up", 2, 0.0, True)
    assert main.main and main.epochs == 1 and not warmup.main
    backbone = [p.detach().clone() for p in model.backbone.parameters()]
    old_rows = model.head.weight[:2].detach().clone()
    new_rows = model.head.weight[2:].detach().clone()
    old_bias = model.head.blocks[0].bias.detach().clone()
    train_phase(runner, ctx, warmup)
    assert all(torch.equal(a, b) for a, b in zip(backbone, model.backbone.parameters()))
    assert all(p.grad is None for p in model.backbone.parameters())  # no backward through the frozen backbone
    assert torch.equal(model.head.weight[:2], old_rows)
    assert torch.equal(model.head.blocks[0].bias, old_bias)
    assert not torch.equal(model.head.weight[2:], new_rows)


def test_registry_and_defaults():
    assert set(STRATEGIES) >= {"finetune", "joint", "lwf", "kd-mse"}
    lwf = build_strategy("lwf")
    assert lwf.hparams["temperature"] == 2.0 and lwf.hparams["t2"] is False
    assert build_strategy("lwf", t2=True, alpha=None).hparams["t2"] is True
    with pytest.raises(UsageError, match="--strategy"):
        build_strategy("ewc")
    with pytest.raises(UsageError, match="alpha"):
        build_strategy("finetune", alpha=1.0)
    with pytest.raises(UsageError, match="--temperature"):
        build_strategy("lwf", temperature=0.0)


def test_fixed_head_trains_every_unit_incremental_only_the_seen_ones(tiny_stream):
    logits = torch.tensor([[2.0, 0.5, 3.0, -1.0, 0.0, 1.0]])
    y = torch.tensor([1])
    for head, units in (("fixed", 6), ("incremental", 4)):
        model = tiny_model(tiny_stream, head=head)
        model.grow(4)
        ctx = TaskContext(tiny_stream.tasks[1], tiny_stream, model, None, 2, 4, torch.device("cpu"), 0, 32,
                          lambda: torch.autocast("cpu", enabled=False), lambda x: x.float())
        loss = build_strategy("finetune").loss(ctx, step_of(torch.zeros(1, 3, 8, 8), y, logits))
        assert loss.item() == pytest.approx(F.cross_entropy(logits[:, :units], y).item())
