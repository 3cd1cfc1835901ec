"""DER++ (Buzzega et al., NeurIPS 2020, Eq. 7).

DER + beta * CE(student(x_buf'), y_buf') on a second replay batch. Both
replay batches are drawn at once, without replacement, and split in halves.
Defaults: the paper's Seq-CIFAR-10 grid (appendix): lr 0.03, beta 0.5,
alpha 0.1 at M = 200 and 0.2 at M = 500.
"""

import torch

from ..buffer import ReplaySample
from ..context import Step, TaskContext
from ..settings import ALPHA, BETA
from .base import classification_loss
from .der import DER


class DERpp(DER):
    name = "derpp"
    paper = "Buzzega et al., Dark Experience for General Continual Learning, NeurIPS 2020 (DER++)"
    help = "DER + beta * CE on a second replay batch's labels"
    settings = (
        *(setting for setting in DER.settings if setting.name != "alpha"),
        ALPHA.with_default(0.2, "DER paper appendix, Seq-CIFAR-10 grid: 0.1 at M = 200, 0.2 at M = 500"),
        BETA.with_default(0.5, "DER paper appendix, Seq-CIFAR-10 grid"),
    )
    memory_defaults = {200: {"alpha": 0.1}, 500: {"alpha": 0.2}}
    broken_heads = {}  # the label CE on replayed samples trains new units down on old classes (benchmarks/README.md)

    def replay_batch(self, ctx: TaskContext, generator: torch.Generator) -> ReplaySample | None:
        return self.buffer.sample(2 * self.replay_size(ctx), generator)

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        value = self.current_loss(ctx, step)
        if step.replay is None:
            return value
        half = (len(step.replay) + 1) // 2
        value = value + self.logit_loss(ctx, step, 0, half)
        if len(step.replay) > half:
            rows = slice(step.n_current + half, step.n_current + len(step.replay))
            value = value + self.hparams["beta"] * classification_loss(ctx, step.y[rows], step.logits[rows])
        return value
