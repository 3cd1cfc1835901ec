"""The training loop: one phase of a task (``context.Phase``), epoch by epoch, step by step.

The runner (``lifelong_kd.runner``) goes through the tasks and their phases; this module trains one.
A step builds the *global* batch, the same on every process: the current samples of the epoch's
permutation, the strategy's replay sample, their augmentation, all drawn from the run's seeded
generator. A process forwards its shard (``Distributed.shard``, every sample on one process),
``DistributedDataParallel`` averages the gradients, and the strategy's ``after_step`` (the
memory's update) sees the global batch, with the logits each process computed gathered back
(not the features: no memory update reads them).

Design: ``lifelong_kd/DESIGN.md``, "The one loop".
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from inspect import signature
from itertools import count
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .context import Phase, Step, TaskContext
from .cost import step_kind
from .faults import kill_point
from .training import make_optimizer, make_scheduler, show_mean_loss, too_small_to_step

if TYPE_CHECKING:
    from collections.abc import Callable

    from .distributed import Distributed
    from .runner import Runner


class TrainingForward(nn.Module):
    """A step's forward: the backbone under the run's autocast (without autograd when the phase freezes
    it), then the head in float32 on its features; returns (features, logits), and with ``stages``
    the backbone's stage outputs too (PODNet).

    It is the module ``DistributedDataParallel`` wraps: its parameters are those the phase trains
    (a frozen backbone is not registered), so DDP averages exactly their gradients.
    """

    def __init__(self, backbone: nn.Module, run_backbone: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                 autocast: Callable[[], AbstractContextManager], freeze_backbone: bool, stages: bool = False) -> None:
        super().__init__()
        self.stages = stages
        self.head = head
        if not freeze_backbone:
            self.backbone = backbone
        object.__setattr__(self, "run_backbone", run_backbone)  # maybe compiled; never a submodule
        self.autocast, self.freeze_backbone = autocast, freeze_backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with self.autocast(), torch.no_grad() if self.freeze_backbone else nullcontext():
            if self.stages:
                features, maps = self.run_backbone(x, stages=True)
            else:
                features = self.run_backbone(x)
        features = features.float()
        if self.stages:
            return features, self.head(features), maps
        return features, self.head(features)


# DistributedDataParallel's flag for broadcasting buffers before each forward, by its name in this torch
_SYNC_BUFFERS_ARGUMENT = next(name for name in ("forward_sync_buffers", "broadcast_buffers")
                              if name in signature(DistributedDataParallel).parameters)

def train_phase(runner: Runner, ctx: TaskContext, phase: Phase) -> tuple[int, float]:
    """``phase.epochs`` passes over the phase's data, from the runner's position; returns (images, seconds).

    The main phase trains on ``strategy.training_split`` with replay, the options' terms and
    ``after_step``; another phase on the task's data with its own loss alone. Every loss and stored
    logit is float32. The only host syncs are every ``log_every`` steps, to show the mean loss and
    stop on a NaN. An epoch's final, incomplete batch is skipped when it holds fewer than half
    ``batch_size`` samples (``too_small_to_step``). Under a budget (``TrainConfig.budget``) the main
    phase runs epoch after epoch until the task has spent it (``CostMeter.budget_spent``), whatever
    ``phase.epochs``. With ``eval_every`` the seen tasks are evaluated every that many steps of the run.
    """
    cfg, model, hparams, position = runner.config, runner.model, runner.strategy.hparams, runner.position
    params = list(model.parameters() if phase.parameters is None else phase.parameters(model))
    decay = hparams["weight_decay"] if phase.weight_decay is None else phase.weight_decay
    if phase.optimizer is None:
        optimizer = make_optimizer(params, cfg.optimizer, hparams["lr"], hparams["momentum"], decay)
        scheduler = make_scheduler(optimizer, cfg, phase.epochs)
    else:
        optimizer = make_optimizer(params, phase.optimizer[0], phase.optimizer[1], hparams["momentum"], decay)
        scheduler = make_scheduler(optimizer, replace(cfg, schedule="none"), phase.epochs)
    if phase.main:
        split = runner.strategy.training_split(ctx)
    else:
        split = ctx.task.train if phase.data is None else phase.data(ctx)
    order = None
    if runner.resume_state is not None and runner.resume_state["optimizer"] is not None:  # resumed in this phase
        optimizer.load_state_dict(runner.resume_state["optimizer"])
        scheduler.load_state_dict(runner.resume_state["scheduler"])
        order = runner.resume_state["order"].to(runner.device)
    runner.resume_state = None
    forward = _forward(runner, phase)
    x_all, y_all = split.x.to(runner.device), split.y.to(runner.device)
    n = len(y_all)
    model.train(not phase.freeze_backbone)
    images = 0
    cost = runner.record.cost
    budgeted = phase.main and cost.budget is not None
    runner.sync()
    start = time.perf_counter()
    logged = (start, 0)  # when the loss was last shown, and the images trained by then
    for epoch in count(position.epoch) if budgeted else range(position.epoch, phase.epochs):
        if budgeted and cost.budget_spent():
            break
        position.epoch = epoch
        if order is None:
            order = torch.randperm(n, generator=runner.generator, device=runner.device)
        running = torch.zeros((), device=runner.device)
        pending = 0
        epochs = " (budget)" if budgeted else f"/{phase.epochs}"
        desc = f"task {ctx.task.index + 1}/{len(runner.stream)} {phase.name} epoch {epoch + 1}{epochs}"
        first_step, steps_before = position.step, cost.run_steps
        batches = range(0, n, cfg.batch_size)
        with tqdm(total=n, desc=desc, unit="img", disable=not runner.progress, leave=False) as bar:
            bar.update(min(position.step * cfg.batch_size, n))
            for step_index in range(position.step, len(batches)):
                if budgeted and cost.budget_spent():
                    break
                begin = batches[step_index]
                index = order[begin : begin + cfg.batch_size]
                stepped = not too_small_to_step(len(index), cfg.batch_size, begin == 0, runner.dist.world)
                if stepped:
                    value = train_step(runner, ctx, phase, forward, optimizer, x_all[index], y_all[index])
                    running += value.detach()
                    pending += 1
                    images += len(index)
                bar.update(len(index))
                if pending == cfg.log_every:
                    mean = show_mean_loss(bar, running, pending, ctx.task.index, epoch, runner.dist)
                    logged = _log_training(runner, optimizer, mean, logged, images)
                    running.zero_()
                    pending = 0
                position.step = step_index + 1
                if stepped and cfg.eval_every and cost.run_steps % cfg.eval_every == 0:
                    runner.evaluate_anytime(ctx)
                    model.train(not phase.freeze_backbone)
                    logged = (time.perf_counter(), images)  # images/s of training alone
                kill_point("step")
                runner.checkpoint_if_due(optimizer, scheduler, order, epoch_end=step_index == len(batches) - 1)
            if pending:
                mean = show_mean_loss(bar, running, pending, ctx.task.index, epoch, runner.dist)
                logged = _log_training(runner, optimizer, mean, logged, images)
        scheduler.step()
        order = None
        position.step = 0
        if budgeted and first_step == 0 and cost.run_steps == steps_before:  # an epoch too small to step
            break
    runner.sync()
    return images, time.perf_counter() - start


def _log_training(runner: Runner, optimizer: torch.optim.Optimizer, loss: float, logged: tuple[float, int],
                  images: int) -> tuple[float, int]:
    """The loss, lr and images/s since ``logged`` to TensorBoard, when the run writes there; the new mark."""
    now = time.perf_counter()
    if runner.tensorboard is not None:
        speed = (images - logged[1]) / max(now - logged[0], 1e-9)
        runner.tensorboard.training(runner.record.cost.run_steps, loss, optimizer.param_groups[0]["lr"], speed)
    return now, images


def _forward(runner: Runner, phase: Phase) -> nn.Module:
    """The phase's ``TrainingForward``, wrapped in ``DistributedDataParallel`` on many processes."""
    model = runner.model
    forward = TrainingForward(model.backbone, runner.train_backbone, model.head, runner.autocast,
                              phase.freeze_backbone, stages=phase.main and runner.strategy.uses_stages)
    if not runner.dist.active:
        return forward
    device_ids = [runner.device.index] if runner.device.type == "cuda" else None
    sync_buffers = not runner.config.sync_bn  # with global BatchNorm every process has the same statistics
    return DistributedDataParallel(forward, device_ids=device_ids, **{_SYNC_BUFFERS_ARGUMENT: sync_buffers})


def train_step(
    runner: Runner, ctx: TaskContext, phase: Phase, forward: nn.Module, optimizer: torch.optim.Optimizer,
    raw: torch.Tensor, y: torch.Tensor,
) -> torch.Tensor:
    """One SGD step on the global batch ``raw, y`` (and, in the main phase, replay); returns this
    process's loss."""
    strategy = runner.strategy
    n = len(y)
    replay = strategy.replay_batch(ctx, runner.generator) if phase.main else None
    if replay is not None:
        raw, y = torch.cat([raw, replay.x]), torch.cat([y, replay.y])
    x = runner.augment.train(raw, runner.generator)
    whole = Step(raw, x, y, n, torch.empty(0), torch.empty(0), replay, y[:n])  # its features are not gathered
    step = _local(runner.dist, whole)
    if step is not whole and (n % runner.dist.world or (len(y) - n) % (2 * runner.dist.world)):
        runner.warn_uneven(n, len(y) - n)
    kind = step_kind(phase.name, n, len(y) - n, runner.model.num_classes, ctx.teacher is not None)
    with runner.record.cost.counting_step(kind, n, len(y) - n, phase.main, runner.dist, runner.device):
        step.features, step.logits, *maps = forward(step.x)
        step.stages = maps[0] if maps else None
        loss_fn = strategy.loss if phase.main else phase.loss
        value = loss_fn(ctx, step)
        if phase.main:
            for option in runner.options:
                term = option.loss(ctx, step)
                value = value if term is None else value + term
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if phase.main:
            if step is not whole:  # the memory sees the global batch: every process's logits, in order
                whole.logits = runner.dist.gather_step_rows(step.logits.detach(), n, len(y))
            strategy.after_step(ctx, whole)
    return value


def _local(dist: Distributed, whole: Step) -> Step:
    """This process's shard of the global step: rows ``rank::world`` of the current samples and of
    the replayed ones (``whole`` itself on one process)."""
    if not dist.active:
        return whole
    rows = dist.step_rows(whole.n_current, len(whole.y), whole.y.device)
    replay = None if whole.replay is None else whole.replay.rows(dist.shard(len(whole.replay)))
    n_local = dist.shard_size(whole.n_current)
    return Step(whole.raw[rows], whole.x[rows], whole.y[rows], n_local, whole.features, whole.logits, replay,
                whole.current_labels)
