"""The task-stream loop: grow the head, train the task's phases, snapshot the teacher, evaluate.

This is the one training loop of the library (DESIGN.md, "The one loop"). Per task:

    model.grow(seen classes); strategy.before_task(ctx)
    for phase in strategy.phases(ctx): for each epoch, batch:
        main phase: batch ⊕= strategy.replay_batch(); loss = strategy.loss + options' terms
        other phases (LwF's warm-up): the phase's own loss on the phase's parameters
        SGD step; main phase: strategy.after_step(ctx, step)
    strategy.after_task(ctx); options' after_task; teacher = frozen copy of the model
    R[task] = accuracy on the seen tasks' test sets (``lifelong_kd.evaluation``); write results.json

The loop's position (task, phase, epoch, step) is explicit, so a checkpoint
(``lifelong_kd.checkpoint``) taken at any step resumes exactly: the model, the
teacher, the optimiser and schedule, the strategy's state, every random
generator, the epoch's permutation and the results so far. SIGINT and SIGTERM
write one and stop (``RunInterrupted``). The optimiser's settings (lr,
momentum, weight decay) are the strategy's (``strategy.hparams``);
everything else about the loop is ``TrainConfig`` (``lifelong_kd.training``).
"""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .augment import BatchAugment
from .checkpoint import (
    CheckpointInterval,
    rewind_to_task_start,
    save_checkpoint,
)
from .context import TaskContext
from .cost import CostMeter
from .data import TaskStream
from .distributed import Distributed
from .evaluation import accuracy_row, tasks_to_evaluate
from .faults import kill_point
from .loop_state import Position, RunInterrupted, stop_requests
from .models import ContinualModel, frozen_copy
from .options import Option
from .phase_training import train_phase
from .results import RunRecord, environment, write_results
from .run_state import capture, restore
from .strategies import Strategy
from .sync_bn import global_batch_norm
from .tensorboard_log import TensorBoardLog
from .training import (
    LOWER_LR,
    NonFiniteLossError,
    TrainConfig,
)


class HeadLayoutWarning(UserWarning):
    """The model's head layout is known to break the strategy (``Strategy.broken_heads``)."""


class ShardWarning(UserWarning):
    """A step's samples did not split evenly over the processes."""


class Runner:
    """Train ``model`` with ``strategy`` on every task of ``stream`` in turn.

    ``options`` (weight aligning, feature distillation) add to any strategy.
    ``out_dir``, when given, receives ``results.json`` after every task and
    ``checkpoint.pt`` (``checkpoint_every``, the end of every task, and on
    SIGINT/SIGTERM). ``run_config`` is recorded in both, with the resolved loop
    config, the strategy's resolved settings, the options' parameters and the
    class order. ``extra_state`` is stored in every checkpoint as it is (the
    CLI keeps its arguments there). ``resume_from`` a loaded checkpoint
    continues that run. ``reference``: a joint run's accuracy matrices, for intransigence;
    ``tensorboard``: also write the training's scalars to ``out_dir/tb`` (``lifelong_kd.tensorboard_log``).
    """

    def __init__(
        self,
        model: ContinualModel,
        strategy: Strategy,
        stream: TaskStream,
        config: TrainConfig | None = None,
        *,
        options: list[Option] | None = None,
        out_dir: Path | None = None,
        run_config: dict[str, Any] | None = None,
        progress: bool = True,
        extra_state: dict[str, Any] | None = None,
        dist: Distributed | None = None,
        reference: dict[str, list[list[float | None]]] | None = None,
        tensorboard: bool = False,
    ) -> None:
        self.options = options or []
        self.dist = dist or Distributed()
        config = config or TrainConfig()
        self.device = torch.device(config.device)
        train_images = config.epochs * sum(len(task.train) for task in stream)
        self.config, speed_choices = config.resolved(train_images)
        self.interval = CheckpointInterval.parse(self.config.checkpoint_every)
        self.stream = stream
        self.strategy = strategy
        strategy.check_stream(stream.num_classes)
        strategy.check_model(model)
        for option in self.options:
            option.check_model(model)
        strategy.resolve_loop_settings(self.config.epochs)
        if self.dist.active and config.sync_bn:
            global_batch_norm(model)
        self.model = model.to(self.device)
        if self.config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.teacher: ContinualModel | None = None
        self.train_backbone = self.compiled(self.model.backbone)
        self.teacher_backbone: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.out_dir = out_dir
        self.progress = progress and self.dist.main
        self.augment = BatchAugment(
            stream.mean, stream.std, stream.crop_padding, stream.hflip, self.device, self.config.channels_last
        )
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        head_warning = strategy.head_warning(model.head.kind)
        if head_warning is not None:
            warnings.warn(head_warning, HeadLayoutWarning, stacklevel=2)
        self.run_config = {
            "benchmark": stream.name,
            "n_tasks": len(stream),
            **(run_config or {}),
            "head": model.head.kind,
            "warnings": [] if head_warning is None else [head_warning],
            "train": asdict(self.config),
            "strategy": strategy.name,
            "hparams": strategy.hparams,
            "options": [option.record() for option in self.options],
            "class_order": list(stream.class_order),
            "class_names": [stream.class_names[c] for c in stream.class_order],
            "seed": self.config.seed,
            "changes": [],  # settings changed on resuming (``_changes``)
        }
        self.env = {**environment(self.device), "processes": str(self.dist.world), "speed_choices": speed_choices}
        self.test_sets = [(task.test.x.to(self.device), task.test.y.to(self.device)) for task in stream]
        self.record = RunRecord(len(stream), cost=CostMeter(self.config.budget), eval_every=self.config.eval_every,
                                reference=reference)
        self.tensorboard_wanted = tensorboard and out_dir is not None and self.dist.main
        self.tensorboard: TensorBoardLog | None = None  # opened by ``run``, once the output folder is the run's
        self.anytime_seconds = 0.0  # evaluations during the task in progress, counted as evaluation time
        self.position = Position()
        self.task_sizes: list[int] = []  # the head's width after each task's growth
        self.extra_state = extra_state or {}
        self.resume_state: dict[str, Any] | None = None
        self._begun = False
        self._stop_signal: int | None = None
        self._uneven_warned = False
        self.state_hashes: list[str] = []  # the strategy's state after each task, checked equal on every process
        self._since_checkpoint = (0, time.perf_counter())

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

    def context(self, task_index: int) -> TaskContext:
        task = self.stream.tasks[task_index]
        n_old = sum(len(t.classes) for t in self.stream.tasks[:task_index])
        return TaskContext(
            task, self.stream, self.model, self.teacher, n_old, n_old + len(task.classes), self.device,
            self.config.seed, self.config.batch_size, self.autocast, self.augment.eval, self.teacher_backbone,
            self.eval_autocast, self.dist, self.record.cost,
        )

    # ------------------------------------------------------------------ the stream

    def run(self) -> dict[str, Any]:
        """Train the whole stream, or what is left of it after ``resume_from``; return the results
        document (also written to ``out_dir``)."""
        with stop_requests(self.request_stop), self.tensorboard_log():
            self.begin()
            if self.model.head.future_units and self.record.baseline is None and self.position == Position():
                self.record.baseline = self.evaluate(0, range(len(self.stream)))["task_il"]
            finished = self.position.task >= len(self.stream)
            doc = self.record.document(self.run_config, self.env, "completed" if finished else "running")
            for task in self.stream.tasks[self.position.task :]:
                try:
                    doc = self.run_task(task.index)
                except NonFiniteLossError as error:
                    self.write_results(f"failed: {error}")
                    if self.out_dir is not None and self.dist.main:
                        rewind_to_task_start(self.out_dir)
                    raise
                stop = self.dist.any(self._stop_signal is not None, self.device)  # every process stops here
                if stop and task.index < len(self.stream) - 1:
                    self.stop()  # the task's checkpoint is written
            self.resume_state = None
            return doc

    @contextmanager
    def tensorboard_log(self) -> Iterator[None]:
        """``out_dir/tb``'s log open while the run trains (``tensorboard``): opened after ``begin`` may have
        replaced the folder, from the run's step so far (a resumed run drops what it will log again),
        and closed however the run ends."""
        if not self.tensorboard_wanted:
            yield
            return
        self.tensorboard = TensorBoardLog(self.out_dir / "tb", purge_step=self.record.cost.run_steps or None)
        try:
            yield
        finally:
            self.tensorboard.close()
            self.tensorboard = None

    def begin(self) -> None:
        """Write the run's first checkpoint and results.json (status ``running``) before anything is
        trained, so a run killed from here on resumes. ``run`` begins a run not begun yet."""
        if self.resume_state is None and not self._begun:
            self.checkpoint(task_start=True)
            self.write_results("running")
        self._begun = True

    def run_task(self, index: int) -> dict[str, Any]:
        """Train task ``index`` (from the loop's position in it) and evaluate it."""
        start = time.perf_counter()
        images, fit_seconds = 0, 0.0
        cost = self.record.cost
        self.anytime_seconds = 0.0
        if self.position.stage == "train":
            if len(self.task_sizes) <= index:  # the task starts here (not resumed inside it)
                cost.start_task(self.device)
                self.model.grow(self.context(index).n_seen)
                self.task_sizes.append(self.model.num_classes)
                with cost.counting_task_work(self.dist, self.device):
                    self.strategy.before_task(self.context(index))
            ctx = self.context(index)
            phases = self.strategy.phases(ctx, self.config.epochs)
            for phase_index in range(self.position.phase, len(phases)):
                self.position.phase = phase_index
                phase_images, phase_seconds = train_phase(self, ctx, phases[phase_index])
                images, fit_seconds = images + phase_images, fit_seconds + phase_seconds
                self.position.epoch = self.position.step = 0
            with cost.counting_task_work(self.dist, self.device):
                self.strategy.after_task(ctx)
                for option in self.options:
                    option.after_task(ctx)
            if self.dist.active:  # one memory, identical on every process
                self.state_hashes.append(self.dist.check_same(
                    self.strategy.state_dict(), "the strategy's state (replay memory, class means)", self.device))
            self.teacher = self.teacher_backbone = None  # one teacher alive at a time
            self.teacher = frozen_copy(self.model)
            self.teacher_backbone = self.compiled(self.teacher.backbone)
            self.position = Position(index, "evaluate")
            self.checkpoint()
        self.sync()
        train_seconds = time.perf_counter() - start - self.anytime_seconds
        start = time.perf_counter()
        rows = self.evaluate(self.context(index).n_seen, tasks_to_evaluate(
            self.stream, self.model, index, self.config.eval_future))
        eval_seconds = time.perf_counter() - start + self.anytime_seconds
        self.record.add_task(rows, train_seconds, images / max(fit_seconds - self.anytime_seconds, 1e-9),
                             eval_seconds)
        cost.end_task(self.strategy.memory_bytes(), self.device)
        self.position = Position(index + 1)
        self.resume_state = None
        status = "completed" if index == len(self.stream) - 1 else "running"
        self.checkpoint(task_start=True)
        doc = self.write_results(status)
        if self.tensorboard is not None:
            self.tensorboard.task_end(index, cost.run_steps, rows, doc["metrics"])
            self.tensorboard.flush()
        return doc

    def evaluate_anytime(self, ctx: TaskContext) -> None:
        """Evaluate the seen tasks in the middle of a task's training (``eval_every``), as an anytime point."""
        self.sync()  # queued training work is training time
        start = time.perf_counter()
        rows = self.evaluate(ctx.n_seen, range(ctx.task.index + 1))
        self.record.add_anytime(self.record.cost.run_steps, ctx.task.index, rows)
        self.anytime_seconds += time.perf_counter() - start

    def write_results(self, status: str) -> dict[str, Any]:
        doc = self.record.document(self.run_config, self.env, status)
        if self.out_dir is not None and self.dist.main:
            write_results(self.out_dir / "results.json", doc)
        return doc

    def sync(self) -> None:
        """Wait for the device's queued work (CUDA), to time it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def evaluate(self, n_seen: int, evaluated: Iterator[int] | range | list[int]) -> dict[str, list[float | None]]:
        """One row of every accuracy matrix (``lifelong_kd.evaluation.accuracy_row``)."""
        kill_point("evaluate")
        return accuracy_row(
            self.model, self.stream, self.test_sets, n_seen, list(evaluated),
            extra_scores=self.strategy.eval_scores, normalise=self.augment.eval, autocast=self.eval_autocast,
            batch_size=self.config.eval_batch_size, dist=self.dist,
        )

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_if_due(self, optimizer: torch.optim.Optimizer, scheduler: Any, order: torch.Tensor,
                          epoch_end: bool) -> None:
        """Write a mid-phase checkpoint when the interval has passed, or stop on a signal.

        On many processes they decide together, every ``log_every`` steps and at the end of each
        epoch (one all-reduce): a stop when any was asked to, a checkpoint when any found it due,
        so all of them checkpoint, check their weights and stop after the same step."""
        steps, since = self._since_checkpoint
        self._since_checkpoint = (steps + 1, since)
        stop, due = self._stop_signal is not None, self.interval.due(steps + 1, time.perf_counter() - since)
        if self.dist.active:
            if not (epoch_end or self.position.step % self.config.log_every == 0):
                return
            stop, due = self.dist.any_of([stop, due], self.device)
        if stop:
            self.checkpoint(optimizer, scheduler, order)
            self.stop()
        if due:
            self.checkpoint(optimizer, scheduler, order)

    def checkpoint(
        self, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
        order: torch.Tensor | None = None, task_start: bool = False,
    ) -> None:
        """Write everything the rest of the run depends on to ``out_dir/checkpoint.pt`` (``run_state``).
        Only finite weights are saved, so every checkpoint kept is a good one: non-finite ones stop the
        run (``NonFiniteLossError``)."""
        self._since_checkpoint = (0, time.perf_counter())
        if self.out_dir is not None:
            if not all(bool(p.isfinite().all()) for p in self.model.parameters()):
                raise NonFiniteLossError(f"the weights became non-finite {self.position.describe()}: " + LOWER_LR)
            if self.dist.main:
                start = time.perf_counter()
                save_checkpoint(self.out_dir, capture(self, optimizer, scheduler, order), task_start)
                self.record.timing["checkpoint_seconds"].append(time.perf_counter() - start)

    def resume_from(self, state: dict[str, Any]) -> None:
        """Put the run where ``state`` (a loaded checkpoint) left it; ``run`` then continues from there."""
        restore(self, state)
        self.resume_state = state

    def warn_uneven(self, current: int, replayed: int) -> None:
        """Say once, and record in results.json, that a step's rows did not split evenly over the processes."""
        if self._uneven_warned:
            return
        self._uneven_warned = True
        message = (f"a step of {current} current and {replayed} replayed samples does not split evenly over "
                   f"{self.dist.world} processes (the replayed ones in twice as many parts, for DER++'s halves; "
                   f"{self.position.describe()}): each process's loss is the mean over its shard and the shards "
                   "weigh equally, so such steps differ slightly from one process's")
        self.run_config["warnings"].append(message)
        if self.dist.main:
            warnings.warn(message, ShardWarning, stacklevel=2)

    def request_stop(self, signal_number: int) -> None:
        """Stop after the current step, with a checkpoint (SIGINT, SIGTERM)."""
        self._stop_signal = signal_number

    def stop(self) -> None:
        signal_number = self._stop_signal or signal.SIGTERM
        self.write_results("interrupted")
        raise RunInterrupted(signal_number, self.position.describe())
