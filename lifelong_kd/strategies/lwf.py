"""Learning without Forgetting (Li & Hoiem, ECCV 2016; TPAMI 2017).

"We ... encourage the outputs of the old tasks for the new images to remain
close to the recorded outputs": CE on the current task plus
alpha * KL(softmax(t/T) || softmax(s/T)) over the old units, T = 2.
Defaults: the DER paper's grid search for Seq-CIFAR-10 (Buzzega et al. 2020,
appendix): lr 0.01, weight decay 5e-4, alpha 3, T 2, no T^2 factor.
"""

import torch

from ..context import Step, TaskContext
from ..losses import kl_distillation
from .base import Strategy, classification_loss


class LwF(Strategy):
    name = "lwf"
    paper = "Li & Hoiem, Learning without Forgetting, ECCV 2016"
    help = "CE + alpha * KL(teacher/T || student/T) on the old units"
    defaults = {
        "lr": 0.01, "momentum": 0.0, "weight_decay": 5e-4,
        "alpha": 3.0, "temperature": 2.0, "t2": False, "warmup_epochs": 0,
    }
    ranges = {"alpha": (0.0, 1e6), "temperature": (1e-3, 1e3), "warmup_epochs": (0, 1000)}

    def before_task(self, ctx: TaskContext) -> None:
        """Optional warm-up: train only the new head units, backbone frozen in eval mode."""
        if ctx.teacher is None or not self.hparams["warmup_epochs"]:
            return
        ctx.fit(
            epochs=int(self.hparams["warmup_epochs"]),
            parameters=ctx.model.head.parameters(),
            loss=classification_loss_new_units,
            weight_decay=0.0,
            train_mode=False,
        )

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return ce_plus_distillation(ctx, step, self.hparams)


def ce_plus_distillation(ctx: TaskContext, step: Step, hparams: dict) -> torch.Tensor:
    """CE + alpha * KL(teacher/T || student/T) over the old units, on every sample of the step."""
    ce = classification_loss(ctx, step.y, step.logits)
    if ctx.teacher is None:
        return ce
    old = ctx.n_old
    teacher = ctx.teacher_logits(step.x)[:, :old]
    kd = kl_distillation(step.logits[:, :old], teacher, hparams["temperature"], hparams["t2"])
    return ce + hparams["alpha"] * kd


def classification_loss_new_units(ctx: TaskContext, step: Step) -> torch.Tensor:
    """CE restricted to the current task's units: the old rows get no gradient."""
    return torch.nn.functional.cross_entropy(step.logits[:, ctx.n_old : ctx.n_seen], step.y - ctx.n_old)
