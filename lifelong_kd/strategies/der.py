"""Dark Experience Replay (Buzzega et al., NeurIPS 2020).

A reservoir memory of (x, logits at insertion); the loss is CE on the
current batch + alpha * MSE(student(x_buf), logits_buf) (Eq. 6). No teacher
forward: the stored logits are the targets. With a growing head, a sample's
stored logits cover the units that existed when it was stored, and only
those are compared. Defaults: the paper's Seq-CIFAR-10 grid (appendix):
lr 0.03, alpha 0.3 (M = 200 and 500).
"""

import torch

from ..context import Step, TaskContext
from ..losses import masked_mse_distillation
from ..settings import ALPHA, training_settings
from .base import classification_loss
from .replay import ReplayStrategy, replay_settings


class DER(ReplayStrategy):
    name = "der"
    paper = "Buzzega et al., Dark Experience for General Continual Learning, NeurIPS 2020"
    help = "CE on the current batch + alpha * MSE on replayed samples' stored logits (no teacher pass)"
    settings = (
        *training_settings(0.03, source="DER paper appendix, Seq-CIFAR-10 grid"),
        *replay_settings(("reservoir",)),  # logits are stored as samples arrive
        ALPHA.with_default(0.3, "DER paper appendix, Seq-CIFAR-10 grid (M = 200 and 500)"),
    )
    stores_logits = True
    head = "fixed"
    broken_heads = {
        "incremental": "a growing head gives stored logits no units for later classes, so DER's MSE never "
        "pushes new classes down on old samples and DER scores at fine-tuning level in class-IL",
    }

    def current_loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        n = step.n_current
        return classification_loss(ctx, step.y[:n], step.logits[:n])

    def logit_loss(self, ctx: TaskContext, step: Step, start: int, stop: int) -> torch.Tensor:
        """alpha * masked MSE between the step's logits and the stored ones, on replay rows [start, stop)
        (its denominator counted over the global batch on many processes)."""
        index = step.replay.index[start:stop]
        rows = step.logits[step.n_current + start : step.n_current + stop]
        stored, units = self.buffer.logits[index], self.buffer.logit_units[index]
        compared = ctx.dist.mean(units.sum()) if ctx.dist.active else None
        return self.hparams["alpha"] * masked_mse_distillation(rows, stored, units, compared)

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        value = self.current_loss(ctx, step)
        if step.replay is not None:
            value = value + self.logit_loss(ctx, step, 0, len(step.replay))
        return value

