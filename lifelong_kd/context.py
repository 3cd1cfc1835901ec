"""What a strategy sees of the run while it trains one task."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from .data import Split, Task, TaskStream
from .models import ContinualModel


@dataclass
class TaskContext:
    """The state of the stream at one task.

    ``n_old`` counts the classes of earlier tasks, ``n_seen`` adds this
    task's: the old units are ``[:n_old]``, the current ones
    ``[n_old:n_seen]``. ``teacher`` is the frozen snapshot taken at the end of
    the previous task (None during the first). ``trainer`` is the runner's one
    training loop; ``fit`` runs it on this task's data, for strategies that
    train a phase of their own (warm-ups).
    """

    task: Task
    stream: TaskStream
    model: ContinualModel
    teacher: ContinualModel | None
    n_old: int
    n_seen: int
    device: torch.device
    autocast: Callable[[], AbstractContextManager]
    trainer: Callable[..., tuple[int, float]]
    _teacher_cache: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def seen_tasks(self) -> tuple[Task, ...]:
        return self.stream.tasks[: self.task.index + 1]

    def fit(self, epochs: int, **options: Any) -> tuple[int, float]:
        """Train on this task's training data with the runner's loop (see ``Runner.fit``)."""
        return self.trainer(self, self.task.train, epochs, **options)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits for batch ``x``, computed once per batch, without grad.

        Runs under ``torch.inference_mode`` and the run's autocast; the result is
        cloned out of inference mode so a loss may save it for backward.
        """
        if self.teacher is None:
            raise RuntimeError("there is no teacher during the first task")
        if self._teacher_cache is not None and self._teacher_cache[0] is x:
            return self._teacher_cache[1]
        with torch.inference_mode(), self.autocast():
            logits = self.teacher(x)
        logits = logits.clone()
        self._teacher_cache = (x, logits)
        return logits


def concat_splits(splits: list[Split]) -> Split:
    """One split holding the samples of all ``splits`` in order."""
    return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))
