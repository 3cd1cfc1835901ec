"""What every replay strategy shares: a memory, replay batches, memory updates.

Design: ``lifelong_kd/DESIGN.md``, "The replay memory".
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..buffer import ReplayBuffer, ReplaySample, rebuild_balanced
from ..context import Step, TaskContext
from ..errors import UsageError
from ..settings import MEMORY, MEMORY_POLICY, REPLAY_BATCH_SIZE, Setting
from .base import Strategy, current


def replay_settings(
    policies: tuple[str, ...] = ("reservoir", "class-balanced"), replay_batches: bool = True
) -> tuple[Setting, ...]:
    """Memory budget, fill policy (the first of ``policies`` by default) and, for a strategy that draws
    replay batches (``replay_batches``), the replay batch size."""
    policy = dataclasses.replace(MEMORY_POLICY, default=policies[0], choices=policies)
    return (MEMORY, policy, REPLAY_BATCH_SIZE) if replay_batches else (MEMORY, policy)


class ReplayStrategy(Strategy):
    """A strategy with a replay memory of ``memory`` samples.

    ``replay_batch_size`` samples (0: as many as the current batch) are drawn
    each step and forwarded together with the current batch. With the
    ``reservoir`` policy every current batch is offered to the memory after
    the step; ``class-balanced`` rebuilds the memory at the end of each task.
    """

    stores_logits = False

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.buffer: ReplayBuffer | None = None

    def before_task(self, ctx: TaskContext) -> None:
        self.make_buffer(ctx)

    def make_buffer(self, ctx: TaskContext) -> None:
        """The memory, made empty at the first task (seeded with the run's seed) and kept after."""
        if self.buffer is None:
            self.buffer = ReplayBuffer(int(self.hparams["memory"]), ctx.device, seed=ctx.seed)

    def check_stream(self, num_classes: int) -> None:
        """A per-class memory (class-balanced, herding) smaller than the classes leaves some without a sample."""
        memory, policy = int(self.hparams["memory"]), self.hparams["memory_policy"]
        if policy != "reservoir" and memory < num_classes:
            raise UsageError(
                f"--memory {memory} is smaller than the stream's {num_classes} classes: the {policy} memory "
                f"would end with no sample of {num_classes - memory} classes; use --memory {num_classes} or more"
            )

    def memory_bytes(self) -> int:
        return 0 if self.buffer is None else self.buffer.nbytes

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": None if self.buffer is None else self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any], ctx: TaskContext) -> None:
        self.buffer = None
        if state["buffer"] is not None:
            self.make_buffer(ctx)
            self.buffer.load_state_dict(state["buffer"])

    def replay_size(self, ctx: TaskContext) -> int:
        return int(self.hparams["replay_batch_size"]) or ctx.batch_size

    def replay_batch(self, ctx: TaskContext, generator: torch.Generator) -> ReplaySample | None:
        return self.buffer.sample(self.replay_size(ctx), generator)

    def after_step(self, ctx: TaskContext, step: Step) -> None:
        if self.hparams["memory_policy"] == "reservoir":
            logits = current(step, step.logits).detach() if self.stores_logits else None
            self.buffer.add_reservoir(current(step, step.raw), current(step, step.y), ctx.task.index, logits)

    def after_task(self, ctx: TaskContext) -> None:
        if self.hparams["memory_policy"] == "class-balanced":
            rebuild_balanced(self.buffer, ctx.task.train.x, ctx.task.train.y, ctx.task.index)
