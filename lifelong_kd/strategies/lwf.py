"""Learning without Forgetting (Li & Hoiem, ECCV 2016; TPAMI 2017).

"We ... encourage the outputs of the old tasks for the new images to remain
close to the recorded outputs": CE on the current task plus
alpha * KL(softmax(t/T) || softmax(s/T)) over the old units, T = 2.
Defaults: the DER paper's grid search for Seq-CIFAR-10 (Buzzega et al. 2020,
appendix): lr 0.01, weight decay 5e-4, alpha 3, T 2, no T^2 factor, and, as
that paper's code (Mammoth) does, a warm-up of the new head units alone for
as many epochs as the task trains (``warmup_epochs -1``; 0 turns it off;
measured: benchmarks/README.md, "Defaults, measured"). The head
is the class-IL one that grid was searched on (one growing head); the
paper's original multi-head form is ``--head multi`` (one KL per old head).
"""

import torch

from ..context import Phase, Step, TaskContext
from ..losses import kl_distillation
from ..settings import ALPHA, T2, TEMPERATURE, WARMUP_EPOCHS, training_settings
from .base import Strategy, classification_loss


class LwF(Strategy):
    name = "lwf"
    paper = "Li & Hoiem, Learning without Forgetting, ECCV 2016"
    help = "CE + alpha * KL(teacher/T || student/T) on the old units"
    settings = (
        *training_settings(0.01, weight_decay=5e-4, source="DER paper appendix, Seq-CIFAR-10 'LwF' grid"),
        ALPHA.with_default(3.0, "DER paper appendix, Seq-CIFAR-10 'LwF' grid"),
        TEMPERATURE.with_default(2.0, "Li & Hoiem 2017; DER paper grid"),
        T2,
        WARMUP_EPOCHS.with_default(-1, "Mammoth's LwF, the DER paper's code: n_epochs of head-only training"),
    )

    def resolve_loop_settings(self, epochs: int) -> None:
        """``warmup_epochs -1`` becomes the task's epochs, as Mammoth's LwF warms up for ``n_epochs``."""
        if self.hparams["warmup_epochs"] < 0:
            self.hparams["warmup_epochs"] = epochs

    def phases(self, ctx: TaskContext, epochs: int) -> tuple[Phase, ...]:
        """The warm-up (Mammoth's LwF) first: only the new head units train, the backbone frozen in eval mode."""
        main = super().phases(ctx, epochs)
        if ctx.teacher is None or not self.hparams["warmup_epochs"]:
            return main
        warmup = Phase(
            "warm-up", int(self.hparams["warmup_epochs"]), loss=classification_loss_new_units,
            parameters=lambda model: model.head.parameters(), weight_decay=0.0, freeze_backbone=True,
        )
        return (warmup, *main)

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return ce_plus_distillation(ctx, step, self.hparams)


def ce_plus_distillation(ctx: TaskContext, step: Step, hparams: dict) -> torch.Tensor:
    """CE + alpha * KL(teacher/T || student/T) over the old units, on every sample of the step.

    With one head per task (``multi``) the term is LwF's multi-head form
    (Li & Hoiem 2017, Eq. 2 summed over the old tasks): one softmax per old
    task's head, sum_t KL(softmax(t_t/T) || softmax(s_t/T)).
    """
    ce = classification_loss(ctx, step.y, step.logits)
    if ctx.teacher is None:
        return ce
    old = ctx.n_old
    teacher = ctx.teacher_logits(step.x)[:, :old]
    kd = sum(
        kl_distillation(step.logits[:, group], teacher[:, group], hparams["temperature"], hparams["t2"])
        for group in ctx.model.head.distillation_groups(old, ctx.stream.task_of_class)
    )
    return ce + hparams["alpha"] * kd


def classification_loss_new_units(ctx: TaskContext, step: Step) -> torch.Tensor:
    """CE restricted to the current task's units: the old rows get no gradient."""
    return torch.nn.functional.cross_entropy(step.logits[:, ctx.n_old : ctx.n_seen], step.y - ctx.n_old)
