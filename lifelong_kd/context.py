"""What a strategy sees of the run: the task's state and the current training step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch
from torch import nn

from .buffer import ReplaySample
from .cost import CostMeter
from .data import Split, Task, TaskStream
from .distributed import Distributed
from .models import ContinualModel


@dataclass
class Step:
    """One training step: the current batch, then the replayed samples, forwarded together.

    ``raw`` holds the uint8 images, ``x`` their augmented float version;
    rows ``[:n_current]`` are the current task's batch, the rest is ``replay``.
    ``current_labels`` are the labels of the whole current batch, on every process (under
    torchrun a process's rows are only its shard of it; on one process they are ``y[:n_current]``).
    """

    raw: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    n_current: int
    features: torch.Tensor
    logits: torch.Tensor
    replay: ReplaySample | None = None
    current_labels: torch.Tensor | None = None
    stages: list[torch.Tensor] | None = None  # the backbone's stage outputs, for a strategy that asks (PODNet)


@dataclass
class TaskContext:
    """The state of the stream at one task.

    ``n_old`` counts the classes of earlier tasks, ``n_seen`` adds this
    task's: the old units are ``[:n_old]``, the current ones
    ``[n_old:n_seen]``. ``teacher`` is the frozen snapshot taken at the end of
    the previous task (None during the first). ``teacher_backbone``, when given,
    is the teacher's backbone as the runner calls it (compiled with
    ``--compile``). ``eval_autocast`` is the evaluation precision's
    autocast, used for the features of ``features_of`` (herding, class means). ``dist``: this process's
    place among the run's processes (``lifelong_kd.distributed``).
    """

    task: Task
    stream: TaskStream
    model: ContinualModel
    teacher: ContinualModel | None
    n_old: int
    n_seen: int
    device: torch.device
    seed: int
    batch_size: int
    autocast: Callable[[], AbstractContextManager]
    normalise: Callable[[torch.Tensor], torch.Tensor]
    teacher_backbone: Callable[[torch.Tensor], torch.Tensor] | None = None
    eval_autocast: Callable[[], AbstractContextManager] | None = None
    dist: Distributed = field(default_factory=Distributed)
    cost: CostMeter | None = None
    _teacher_cache: tuple[torch.Tensor, tuple[torch.Tensor, ...]] | None = field(default=None, repr=False)

    @property
    def seen_tasks(self) -> tuple[Task, ...]:
        return self.stream.tasks[: self.task.index + 1]

    def task_generator(self) -> torch.Generator:
        """A CPU generator seeded by the run's seed and the task: the same draws on every process."""
        return torch.Generator().manual_seed(self.seed * 100_003 + self.task.index)

    def features_of(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """The model's features of uint8 ``images`` (no augmentation), in eval mode, as float32. On many
        processes each computes its shard and the features are gathered: the same on every process."""
        was_training = self.model.training
        self.model.eval()
        chunks = [torch.empty(0, self.model.head.in_features, device=self.device)]
        with torch.inference_mode(), (self.eval_autocast or self.autocast)():
            for chunk in images[self.dist.shard(len(images))].split(batch_size):
                chunks.append(self.model.features(self.normalise(chunk.to(self.device))).float())
        self.model.train(was_training)
        return self.dist.gather_rows(torch.cat(chunks).clone(), len(images))

    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's (features, logits) for batch ``x``: one forward per batch, no grad.

        The backbone runs under ``torch.inference_mode`` and the run's
        autocast, the head in float32 on its features (as in training); the
        results are cloned out of inference mode so a loss may save them for
        backward.
        """
        if self.teacher is None:
            raise RuntimeError("there is no teacher during the first task")
        if self._teacher_cache is not None and self._teacher_cache[0] is x:
            return self._teacher_cache[1][:2]
        self._count_teacher(x)
        with torch.inference_mode():
            backbone = self.teacher.backbone if self.teacher_backbone is None else self.teacher_backbone
            with self.autocast():
                features = backbone(x)
            features = features.float()
            logits = self.teacher.head(features)
        outputs = (features.clone(), logits.clone())
        self._teacher_cache = (x, outputs)
        return outputs

    def teacher_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The teacher backbone's stage outputs for batch ``x`` (PODNet); its features and logits come
        from the same forward (``teacher_outputs`` then finds them)."""
        if self.teacher is None:
            raise RuntimeError("there is no teacher during the first task")
        if self._teacher_cache is not None and self._teacher_cache[0] is x and len(self._teacher_cache[1]) == 3:
            return self._teacher_cache[1][2]
        self._count_teacher(x)
        with torch.inference_mode():
            with self.autocast():
                features, maps = self.teacher.backbone(x, stages=True)
            features = features.float()
            logits = self.teacher.head(features)
        outputs = (features.clone(), logits.clone(), [m.clone() for m in maps])
        self._teacher_cache = (x, outputs)
        return outputs[2]

    def _count_teacher(self, x: torch.Tensor) -> None:
        if self.cost is not None:
            self.cost.teacher_forwarded += len(x)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for ``x`` (see ``teacher_outputs``)."""
        return self.teacher_outputs(x)[1]


LossFn = Callable[[TaskContext, Step], torch.Tensor]


@dataclass(frozen=True)
class Phase:
    """A stretch of a task's training, run by the runner's one loop: ``epochs`` passes over the data.

    A strategy returns its task's phases as data (``Strategy.phases``), so the loop always knows
    where it is (task, phase, epoch, step) and a checkpoint can resume inside any of them. The
    task's ``main`` phase trains on the strategy's training split with its loss, replay, the
    options' terms and ``after_step``. Any other phase (LwF's warm-up, BiC's bias correction)
    trains with ``loss`` alone on its own ``data`` (default: the task's). Any phase trains only
    the ``parameters`` it names (default: all), at ``weight_decay`` (default: the strategy's),
    with its own ``optimizer`` (name, lr) at a constant rate where it gives one (default: the
    strategy's lr and the run's schedule); with ``freeze_backbone`` the backbone runs in eval mode
    without autograd.
    """

    name: str
    epochs: int
    loss: LossFn | None = None
    parameters: Callable[[ContinualModel], Iterable[nn.Parameter]] | None = None
    weight_decay: float | None = None
    freeze_backbone: bool = False
    data: Callable[[TaskContext], Split] | None = None
    optimizer: tuple[str, float] | None = None

    @property
    def main(self) -> bool:
        return self.loss is None
