"""The task-stream loop: grow the head, train, snapshot the teacher, evaluate.

This is the one training loop of the library (README, "Design notes"). Per task:

    model.grow(seen classes); strategy.before_task(ctx)
    for each epoch, batch: batch ⊕= strategy.replay_batch(); x = augment(batch)
        loss = strategy.loss(ctx, step) + options' terms; SGD step; strategy.after_step(ctx, step)
    strategy.after_task(ctx); options' after_task; teacher = frozen copy of the model
    R[task] = accuracy on every task's test set; write results.json
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .augment import BatchAugment
from .context import Step, TaskContext
from .data import Split, TaskStream
from .models import ContinualModel, frozen_copy
from .options import Option
from .results import environment, results_document, write_results
from .strategies import Strategy

LossFn = Callable[[TaskContext, Step], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops."""


@dataclass(frozen=True)
class TrainConfig:
    """Options of the training loop shared by every strategy."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    eval_batch_size: int = 512
    device: str = "cpu"
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    log_every: int = 25


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
    ``run_config`` is recorded in it (with the class order and strategy
    hyperparameters added).
    """

    def __init__(
        self,
        model: ContinualModel,
        strategy: Strategy,
        stream: TaskStream,
        config: TrainConfig,
        *,
        options: list[Option] | None = None,
        out_dir: Path | None = None,
        run_config: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.options = options or []
        self.device = torch.device(config.device)
        self.config = config
        self.stream = stream
        self.strategy = strategy
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.teacher: ContinualModel | None = None
        self.train_backbone = self.compiled(self.model.backbone)
        self.teacher_backbone: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.out_dir = out_dir
        self.progress = progress
        self.augment = BatchAugment(
            stream.mean, stream.std, stream.crop_padding, stream.hflip, self.device, config.channels_last
        )
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.run_config = {
            **(run_config or {}),
            "train": asdict(config),
            "strategy": strategy.name,
            "hparams": strategy.hparams,
            "options": [option.name for option in self.options],
            "class_order": list(stream.class_order),
            "class_names": [stream.class_names[c] for c in stream.class_order],
            "seed": config.seed,
        }
        self.env = environment(self.device)
        self.test_sets = [(task.test.x.to(self.device), task.test.y.to(self.device)) for task in stream]

    def compiled(self, backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """``torch.compile(backbone)`` with ``--compile``, else the backbone itself.

        The compiled wrapper lives beside the model, never inside it, so the
        model deep-copies into a teacher and saves its state as usual; its
        parameters are the model's own. Training and the teacher's forward use
        it; evaluation runs eagerly (other batch sizes, no recompiles).
        """
        return torch.compile(backbone) if self.config.compile else backbone

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast when ``amp == "bf16"``, else a no-op context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp == "bf16")

    def run(self) -> dict[str, Any]:
        """Train the whole stream; return the results document (also written to ``out_dir``)."""
        matrices: dict[str, list[list[float | None]]] = {}
        timing: dict[str, list[float]] = {"train_seconds": [], "images_per_second": [], "eval_seconds": []}
        baseline = self.evaluate()["class_il"] if self.model.head_kind == "fixed" else None
        n_old = 0
        doc: dict[str, Any] = {}
        for task in self.stream:
            n_seen = n_old + len(task.classes)
            self.model.grow(n_seen)
            ctx = TaskContext(
                task, self.stream, self.model, self.teacher, n_old, n_seen, self.device, self.config.seed,
                self.config.batch_size, self.autocast, self.augment.eval, self.fit, self.teacher_backbone,
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
            for name, row in self.evaluate().items():
                matrices.setdefault(name, []).append(row)
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
        train_mode: bool = True,
    ) -> tuple[int, float]:
        """The training loop: ``epochs`` passes over ``split``; returns (images, seconds).

        ``loss`` replaces the strategy's loss for a strategy's own phase (a
        warm-up); such a phase draws no replay and adds no option terms. The
        only host syncs are every ``log_every`` steps, to show the mean loss
        and stop on a NaN. A final batch of one sample is skipped (BatchNorm).
        """
        cfg = self.config
        model = self.model
        params = list(model.parameters() if parameters is None else parameters)
        optimizer = _make_optimizer(params, cfg, cfg.weight_decay if weight_decay is None else weight_decay)
        scheduler = _make_scheduler(optimizer, cfg, epochs)
        loss_fn = loss or self.strategy.loss
        x_all = split.x.to(self.device)
        y_all = split.y.to(self.device)
        n = len(y_all)
        model.train(train_mode)
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
                    if len(index) < 2:
                        continue
                    raw, y = x_all[index], y_all[index]
                    replay = self.strategy.replay_batch(ctx, self.generator) if loss is None else None
                    if replay is not None:
                        raw, y = torch.cat([raw, replay.x]), torch.cat([y, replay.y])
                    x = self.augment.train(raw, self.generator)
                    with self.autocast():
                        features = self.train_backbone(x)
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

    @torch.inference_mode()
    def evaluate(self) -> dict[str, list[float | None]]:
        """Accuracy (percent) on every task's test set, class-IL and task-IL.

        Class-IL: arg-max over all the head's units. Task-IL: arg-max over the
        evaluated task's units only; None when the head has none for it yet.
        A strategy's extra classifiers (``eval_scores``) are evaluated the same
        way, as ``<name>_class_il`` and ``<name>_task_il``.
        """
        model = self.model
        model.eval()
        correct: dict[str, list[torch.Tensor | None]] = {}
        sizes = []
        for task in self.stream:
            low, high = task.classes[0], task.classes[-1] + 1
            counts: dict[str, torch.Tensor] = {}
            x_all, y_all = self.test_sets[task.index]
            for begin in range(0, len(y_all), self.config.eval_batch_size):
                y = y_all[begin : begin + self.config.eval_batch_size]
                with self.autocast():
                    features = model.features(self.augment.eval(x_all[begin : begin + self.config.eval_batch_size]))
                    scores = {"": model.head(features).float(), **self.strategy.eval_scores(features)}
                for name, score in scores.items():
                    prefix = f"{name}_" if name else ""
                    hits = (score.argmax(1) == y).sum()
                    counts[f"{prefix}class_il"] = counts.get(f"{prefix}class_il", 0) + hits
                    if high <= score.shape[1]:
                        task_hits = (score[:, low:high].argmax(1) + low == y).sum()
                        counts[f"{prefix}task_il"] = counts.get(f"{prefix}task_il", 0) + task_hits
            for name in counts:
                correct.setdefault(name, []).append(counts[name])
            for name in correct:
                if name not in counts:
                    correct[name].append(None)
            sizes.append(len(y_all))
        return {
            name: [None if c is None else 100.0 * float(c) / n for c, n in zip(values, sizes)]
            for name, values in correct.items()
        }


def _check_and_show(bar: tqdm, running: torch.Tensor, steps: int, ctx: TaskContext, epoch: int) -> None:
    mean = running.item() / steps
    if not np.isfinite(mean):
        raise NonFiniteLossError(
            f"the loss became {mean} in task {ctx.task.index + 1}, epoch {epoch + 1}: "
            "lower --lr, or use --amp off; the finished tasks' results are kept"
        )
    bar.set_postfix(loss=f"{mean:.3f}", refresh=False)


def _make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig, weight_decay: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=weight_decay)


def _make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epochs: int) -> Any:
    """Per-epoch schedule: constant, cosine to zero over the task, or x0.1 at each milestone."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
