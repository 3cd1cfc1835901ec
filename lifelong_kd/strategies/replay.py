"""What every replay strategy shares: a memory, replay batches, memory updates."""

from __future__ import annotations

import torch

from ..buffer import POLICIES, ReplayBuffer, ReplaySample, rebuild_balanced
from ..context import Step, TaskContext
from ..errors import UsageError
from .base import Strategy, current

REPLAY_DEFAULTS = {"memory": 500, "memory_policy": "reservoir", "replay_batch_size": 0}
ONLINE_POLICIES = ("reservoir", "class-balanced")


class ReplayStrategy(Strategy):
    """A strategy with a replay memory of ``memory`` samples.

    ``replay_batch_size`` samples (0: as many as the current batch) are drawn
    each step and forwarded together with the current batch. With the
    ``reservoir`` policy every current batch is offered to the memory after
    the step; ``class-balanced`` rebuilds the memory at the end of each task.
    """

    stores_logits = False
    policies: tuple[str, ...] = ONLINE_POLICIES

    def __init__(self, **overrides) -> None:
        super().__init__(**overrides)
        policy = self.hparams["memory_policy"]
        if policy not in POLICIES:
            raise UsageError(f"unknown --memory-policy '{policy}': choose from {', '.join(POLICIES)}")
        if policy not in self.policies:
            raise UsageError(f"{self.name} cannot use --memory-policy {policy}: use {' or '.join(self.policies)}")
        if int(self.hparams["memory"]) < 1:
            raise UsageError(f"--memory {self.hparams['memory']} is out of range: use a budget >= 1 sample")
        self.buffer: ReplayBuffer | None = None

    def before_task(self, ctx: TaskContext) -> None:
        if self.buffer is None:
            self.buffer = ReplayBuffer(int(self.hparams["memory"]), ctx.device, seed=ctx.seed)

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
