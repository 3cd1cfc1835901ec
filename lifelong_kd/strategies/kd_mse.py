"""Teacher-student logit matching: CE + lambda * MSE(student, teacher) on the old units.

The classic regression form of distillation (Ba & Caruana, NeurIPS 2014),
with the previous task's snapshot as teacher. No published Seq-CIFAR-10
setting exists; the defaults borrow DER's learning rate (0.03), the closest
published logit-MSE method, and take lambda (``--alpha``) = 0.15 from the
knowledge-distillation primer this library started from:
L = CE + 0.15 * MSE(teacher logits, student logits).
"""

import torch

from ..context import Step, TaskContext
from ..losses import mse_distillation
from ..settings import ALPHA, training_settings
from .base import Strategy, classification_loss


class KDMSE(Strategy):
    name = "kd-mse"
    paper = "Ba & Caruana, Do Deep Nets Really Need to be Deep?, NeurIPS 2014"
    help = "CE + alpha * MSE(student logits, teacher logits) on the old units"
    settings = (
        *training_settings(0.03, source="DER's lr (no published Seq-CIFAR-10 grid)"),
        ALPHA.with_default(0.15, "the knowledge-distillation primer: CE + 0.15 * MSE(teacher, student)"),
    )

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        ce = classification_loss(ctx, step.y, step.logits)
        if ctx.teacher is None:
            return ce
        old = ctx.n_old
        teacher = ctx.teacher_logits(step.x)[:, :old]
        return ce + self.hparams["alpha"] * mse_distillation(step.logits[:, :old], teacher)
