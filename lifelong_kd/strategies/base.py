"""The strategy interface: the hooks a method may override, and plain CE."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..context import TaskContext
from ..data import Split
from ..errors import UsageError

TRAINING_DEFAULTS: dict[str, Any] = {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}


class Strategy:
    """A continual-learning method: what differs from plain fine-tuning.

    Hooks, in the order the runner calls them for each task:
    ``training_split`` (the data to train on), ``before_task``, ``loss`` (every
    step), ``after_task``. ``defaults`` holds the method's hyperparameters,
    training ones (lr, momentum, weight_decay) included; ``hparams`` holds the
    resolved values.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    help: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = TRAINING_DEFAULTS
    ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, **overrides: Any) -> None:
        given = {key: value for key, value in overrides.items() if value is not None}
        unknown = set(given) - set(self.defaults)
        if unknown:
            raise UsageError(
                f"strategy '{self.name}' takes no option {', '.join(sorted(unknown))}: "
                f"its options are {', '.join(sorted(self.defaults))}"
            )
        self.hparams = {**self.defaults, **given}
        for key, (low, high) in self.ranges.items():
            if not low <= self.hparams[key] <= high:
                flag = "--" + key.replace("_", "-")
                raise UsageError(f"{flag} {self.hparams[key]} is out of range: use a value in [{low}, {high}]")

    def training_split(self, ctx: TaskContext) -> Split:
        return ctx.task.train

    def before_task(self, ctx: TaskContext) -> None:
        """Called after the head has grown, before training the task."""

    def loss(self, ctx: TaskContext, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return classification_loss(ctx, y, logits)

    def after_task(self, ctx: TaskContext) -> None:
        """Called after training the task, before the teacher snapshot."""


def classification_loss(ctx: TaskContext, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the units of the classes seen so far.

    With a multi-head model (task-IL) only the current task's head is
    trained: CE over units ``[n_old:n_seen]`` with labels shifted by n_old.
    """
    if ctx.model.head_kind == "multi":
        return F.cross_entropy(logits[:, ctx.n_old : ctx.n_seen], y - ctx.n_old)
    return F.cross_entropy(logits[:, : ctx.n_seen], y)
