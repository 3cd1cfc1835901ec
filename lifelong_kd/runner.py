"""The task-stream loop: grow the head, train, snapshot the teacher, evaluate.

This is the one training loop of the library (README, "Design notes"). Per task:

    model.grow(seen classes); strategy.before_task(ctx)
    for each epoch, batch: batch ⊕= strategy.replay_batch(); x = augment(batch)
        loss = strategy.loss(ctx, step) + options' terms; SGD step; strategy.after_step(ctx, step)
    strategy.after_task(ctx); options' after_task; teacher = frozen copy of the model
    R[task] = accuracy on the seen tasks' test sets (and the next task's with a fixed head,
    for FWT; every task's with ``eval_future``); write results.json

The optimiser's settings (lr, momentum, weight decay) are the strategy's
(``strategy.hparams``); everything else about the loop is ``TrainConfig``.
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .augment import BatchAugment
from .context import Step, TaskContext
from .data import Split, TaskStream
from .errors import UsageError
from .evaluation import accuracy_row
from .models import ContinualModel, frozen_copy
from .options import Option
from .results import environment, results_document, write_results
from .speed import EVAL_PRECISIONS, resolve_amp, resolve_compile
from .strategies import Strategy

LossFn = Callable[[TaskContext, Step], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops."""


class HeadLayoutWarning(UserWarning):
    """The model's head layout is known to break the strategy (``Strategy.broken_heads``)."""


@dataclass(frozen=True)
class TrainConfig:
    """Options of the training loop shared by every strategy.

    ``amp`` (auto | bf16 | off) and ``compile`` (auto | on | off) are resolved
    by the runner (``lifelong_kd.speed``); ``channels_last`` applies to the
    convolutional backbones. ``eval_precision`` is ``fp32`` (the default:
    bf16 evaluation moved a final accuracy by 0.11 points, README
    "Evaluation precision"), ``bf16`` or ``train`` (the training
    precision); the head is float32 always.
    ``eval_future`` evaluates every future task too (task-IL, where the head
    has units for it).
    """

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    eval_batch_size: int = 512
    device: str = "cpu"
    amp: str = "auto"
    channels_last: bool = True
    compile: str = "auto"
    eval_precision: str = "fp32"
    eval_future: bool = False
    seed: int = 0
    log_every: int = 25

    def resolved(self, train_images: int) -> tuple[TrainConfig, dict[str, str]]:
        """This config with ``auto`` replaced by what the device does fast, and the reasons."""
        device = torch.device(self.device)
        amp, amp_reason = resolve_amp(self.amp, device)
        compile_, compile_reason = resolve_compile(self.compile, device, train_images)
        if self.eval_precision not in EVAL_PRECISIONS:
            raise UsageError(
                f"unknown --eval-precision '{self.eval_precision}': choose from {', '.join(EVAL_PRECISIONS)}"
            )
        eval_precision = amp if self.eval_precision == "train" else self.eval_precision
        eval_precision = "fp32" if eval_precision == "off" else eval_precision
        config = replace(self, amp=amp, compile="on" if compile_ else "off", eval_precision=eval_precision)
        reasons = {
            "amp": f"{self.amp} -> {amp} ({amp_reason})",
            "compile": f"{self.compile} -> {config.compile} ({compile_reason})",
            "eval_precision": f"{self.eval_precision} -> {eval_precision} backbone, float32 head",
        }
        return config, reasons


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """Train ``model`` with ``strategy`` on every task of ``stream`` in turn.

    ``options`` (weight aligning, feature distillation) add to any strategy.
    ``out_dir``, when given, receives ``results.json`` after every task.
    ``run_config`` is recorded in it, with the resolved loop config, the
    strategy's resolved settings, the options' parameters and the class order.
    """

    def __init__(
        self,
        model: ContinualModel,
        strategy: Strategy,
        stream: TaskStream,
        config: TrainConfig = TrainConfig(),
        *,
        options: list[Option] | None = None,
        out_dir: Path | None = None,
        run_config: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.options = options or []
        self.device = torch.device(config.device)
        train_images = config.epochs * sum(len(task.train) for task in stream)
        self.config, speed_choices = config.resolved(train_images)
        self.stream = stream
        self.strategy = strategy
        strategy.resolve_loop_settings(self.config.epochs)
        self.model = model.to(self.device)
        if self.config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.teacher: ContinualModel | None = None
        self.train_backbone = self.compiled(self.model.backbone)
        self.teacher_backbone: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.out_dir = out_dir
        self.progress = progress
        self.augment = BatchAugment(
            stream.mean, stream.std, stream.crop_padding, stream.hflip, self.device, self.config.channels_last
        )
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        head_warning = strategy.head_warning(model.head_kind)
        if head_warning is not None:
            warnings.warn(head_warning, HeadLayoutWarning, stacklevel=2)
        self.run_config = {
            "benchmark": stream.name,
            "n_tasks": len(stream),
            **(run_config or {}),
            "head": model.head_kind,
            "warnings": [] if head_warning is None else [head_warning],
            "train": asdict(self.config),
            "strategy": strategy.name,
            "hparams": strategy.hparams,
            "options": [option.record() for option in self.options],
            "class_order": list(stream.class_order),
            "class_names": [stream.class_names[c] for c in stream.class_order],
            "seed": self.config.seed,
        }
        self.env = {**environment(self.device), "speed_choices": speed_choices}
        self.test_sets = [(task.test.x.to(self.device), task.test.y.to(self.device)) for task in stream]

    def compiled(self, backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """``torch.compile(backbone)`` when compiling, else the backbone itself.

        The compiled wrapper lives beside the model, never inside it, so the
        model deep-copies into a teacher and saves its state as usual; its
        parameters are the model's own. Training and the teacher's forward use
        it; evaluation runs eagerly (other batch sizes, no recompiles).
        """
        return torch.compile(backbone) if self.config.compile == "on" else backbone

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast when the run trains in bf16, else a no-op context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp == "bf16")

    def eval_autocast(self) -> AbstractContextManager:
        """The evaluation precision's autocast: the training one, or none for ``fp32``."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.eval_precision == "bf16")

    def tasks_to_evaluate(self, task_index: int) -> list[int]:
        """The seen tasks, the next one with a fixed head (FWT needs R[i, i+1]), or with ``eval_future``
        every task the head has units for (a future task without units can give no accuracy)."""
        if self.config.eval_future:
            width = self.model.num_classes
            return [task.index for task in self.stream if task.index <= task_index or task.classes[-1] < width]
        last = task_index + 1 if self.model.head_kind == "fixed" else task_index
        return list(range(min(last, len(self.stream) - 1) + 1))

    def run(self) -> dict[str, Any]:
        """Train the whole stream; return the results document (also written to ``out_dir``)."""
        matrices: dict[str, list[list[float | None]]] = {}
        timing: dict[str, list[float]] = {"train_seconds": [], "images_per_second": [], "eval_seconds": []}
        baseline = None
        if self.model.head_kind == "fixed":
            baseline = self.evaluate(0, range(len(self.stream)))["task_il"]
        n_old = 0
        doc: dict[str, Any] = {}
        for task in self.stream:
            n_seen = n_old + len(task.classes)
            self.model.grow(n_seen)
            ctx = TaskContext(
                task, self.stream, self.model, self.teacher, n_old, n_seen, self.device, self.config.seed,
                self.config.batch_size, self.autocast, self.augment.eval, self.fit, self.teacher_backbone,
                self.eval_autocast,
            )
            start = time.perf_counter()
            try:
                self.strategy.before_task(ctx)
                images, fit_seconds = self.fit(ctx, self.strategy.training_split(ctx), self.config.epochs)
            except NonFiniteLossError as error:
                if doc and self.out_dir is not None:
                    write_results(self.out_dir / "results.json", {**doc, "status": f"failed: {error}"})
                raise
            self.strategy.after_task(ctx)
            for option in self.options:
                option.after_task(ctx)
            _sync(self.device)
            timing["train_seconds"].append(time.perf_counter() - start)
            timing["images_per_second"].append(images / max(fit_seconds, 1e-9))
            self.teacher = self.teacher_backbone = None  # one teacher alive at a time
            self.teacher = frozen_copy(self.model)
            self.teacher_backbone = self.compiled(self.teacher.backbone)
            start = time.perf_counter()
            for name, row in self.evaluate(n_seen, self.tasks_to_evaluate(task.index)).items():
                earlier = [[None] * len(self.stream) for _ in range(task.index)]
                matrices.setdefault(name, earlier).append(row)
            timing["eval_seconds"].append(time.perf_counter() - start)
            n_old = n_seen
            status = "completed" if task.index == len(self.stream) - 1 else "running"
            doc = results_document(self.run_config, self.env, matrices, timing, status, baseline)
            if self.out_dir is not None:
                write_results(self.out_dir / "results.json", doc)
        return doc

    def fit(
        self,
        ctx: TaskContext,
        split: Split,
        epochs: int,
        *,
        parameters: Iterable[torch.nn.Parameter] | None = None,
        loss: LossFn | None = None,
        weight_decay: float | None = None,
        freeze_backbone: bool = False,
    ) -> tuple[int, float]:
        """The training loop: ``epochs`` passes over ``split``; returns (images, seconds).

        ``loss`` replaces the strategy's loss for a strategy's own phase (a
        warm-up); such a phase draws no replay and adds no option terms.
        ``freeze_backbone`` runs the backbone in eval mode without autograd
        (a phase that trains only ``parameters`` of the head). The
        backbone runs under the run's autocast; the head runs in float32 on
        its features, so every loss and every stored logit is float32. The
        only host syncs are every ``log_every`` steps, to show the mean loss
        and stop on a NaN. An epoch's final, incomplete batch is skipped when
        it holds fewer than half ``batch_size`` samples (``too_small_to_step``).
        """
        cfg = self.config
        model = self.model
        hparams = self.strategy.hparams
        params = list(model.parameters() if parameters is None else parameters)
        decay = hparams["weight_decay"] if weight_decay is None else weight_decay
        optimizer = _make_optimizer(params, cfg.optimizer, hparams["lr"], hparams["momentum"], decay)
        scheduler = _make_scheduler(optimizer, cfg, epochs)
        loss_fn = loss or self.strategy.loss
        x_all = split.x.to(self.device)
        y_all = split.y.to(self.device)
        n = len(y_all)
        model.train(not freeze_backbone)
        images = 0
        _sync(self.device)
        start = time.perf_counter()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            running = torch.zeros((), device=self.device)
            pending = 0
            desc = f"task {ctx.task.index + 1}/{len(self.stream)} epoch {epoch + 1}/{epochs}"
            with tqdm(total=n, desc=desc, unit="img", disable=not self.progress, leave=False) as bar:
                for begin in range(0, n, cfg.batch_size):
                    index = order[begin : begin + cfg.batch_size]
                    if too_small_to_step(len(index), cfg.batch_size, first=begin == 0):
                        continue
                    raw, y = x_all[index], y_all[index]
                    replay = self.strategy.replay_batch(ctx, self.generator) if loss is None else None
                    if replay is not None:
                        raw, y = torch.cat([raw, replay.x]), torch.cat([y, replay.y])
                    x = self.augment.train(raw, self.generator)
                    with self.autocast(), torch.no_grad() if freeze_backbone else nullcontext():
                        features = self.train_backbone(x)
                    features = features.float()
                    step = Step(raw, x, y, len(index), features, model.head(features), replay)
                    value = loss_fn(ctx, step)
                    if loss is None:
                        for option in self.options:
                            term = option.loss(ctx, step)
                            value = value if term is None else value + term
                    optimizer.zero_grad(set_to_none=True)
                    value.backward()
                    optimizer.step()
                    if loss is None:
                        self.strategy.after_step(ctx, step)
                    running += value.detach()
                    pending += 1
                    images += len(index)
                    bar.update(len(index))
                    if pending == cfg.log_every:
                        _check_and_show(bar, running, pending, ctx, epoch)
                        running.zero_()
                        pending = 0
                if pending:
                    _check_and_show(bar, running, pending, ctx, epoch)
            scheduler.step()
        _sync(self.device)
        return images, time.perf_counter() - start

    def evaluate(self, n_seen: int, evaluated: Iterable[int]) -> dict[str, list[float | None]]:
        """One row of every accuracy matrix (``lifelong_kd.evaluation.accuracy_row``)."""
        return accuracy_row(
            self.model, self.stream, self.test_sets, n_seen, list(evaluated),
            extra_scores=self.strategy.eval_scores, normalise=self.augment.eval, autocast=self.eval_autocast,
            batch_size=self.config.eval_batch_size,
        )


def too_small_to_step(size: int, batch_size: int, first: bool) -> bool:
    """Whether the loop skips a batch of ``size`` samples: one sample (BatchNorm cannot train on it),
    or an epoch's final batch of fewer than ``batch_size / 2`` (``first``: the epoch has no other).

    A tiny final batch made the last SGD step of a task one on, say, 4 samples: BatchNorm's
    statistics from 4 samples and a gradient several times as noisy, at the full learning rate,
    decide the weights the task ends with. iCaRL at M = 500 (10,500 images a task, 10,500 % 32 = 4)
    lost current-task accuracy to that one step (README, "iCaRL at M = 500").
    The skipped samples are drawn again, at other positions, in the next epoch's permutation.
    """
    return size < 2 or (not first and size < batch_size / 2)


def _check_and_show(bar: tqdm, running: torch.Tensor, steps: int, ctx: TaskContext, epoch: int) -> None:
    mean = running.item() / steps
    if not np.isfinite(mean):
        raise NonFiniteLossError(
            f"the loss became {mean} in task {ctx.task.index + 1}, epoch {epoch + 1}: "
            "lower --lr, or use --amp off; the finished tasks' results are kept"
        )
    bar.set_postfix(loss=f"{mean:.3f}", refresh=False)


def _make_optimizer(
    params: list[torch.nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epochs: int) -> Any:
    """Per-epoch schedule: constant, cosine to zero over the task, or x0.1 at each milestone."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
