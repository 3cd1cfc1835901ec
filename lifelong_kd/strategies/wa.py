"""WA (Zhao et al., Maintaining Discrimination and Fairness in Class Incremental Learning, CVPR 2020).

The whole method, on herding exemplars that join the training set (``ExemplarStrategy``):
- Loss (Eq. 5): L = (1 - lambda) * L_CE + lambda * L_KD, lambda = C_old / C_total, where L_KD is
  the distillation of the old units at temperature T (Eq. 3, Hinton's soft targets; here as
  KL(p || q), which differs from -sum p log q by the teacher's entropy, a constant): BiC's loss
  (``base.old_share_weighted_loss``).
- Weight clipping (Sec. 4.3): after every optimisation step the head's weights are clipped to be
  non-negative, as the features after the ReLU are.
- Weight aligning (Eq. 8): after each task the new classes' rows are scaled by
  gamma = mean ||w_old|| / mean ||w_new|| (``lifelong_kd.options.align_weights``, also the
  ``--wa`` option alone on any strategy).
Defaults: PyCIL's ``wa.py`` for CIFAR-100 (lr 0.1, momentum 0.9, weight decay 2e-4, T 2). PyCIL
weighs the terms CE + 2 * KD and does not clip; this file follows the paper.
"""

import torch

from ..context import Step, TaskContext
from ..errors import UsageError
from ..models import ContinualModel
from ..options import align_weights
from ..settings import TEMPERATURE, training_settings
from .base import old_share_weighted_loss
from .exemplars import ExemplarStrategy
from .replay import replay_settings

PYCIL = "PyCIL wa.py, CIFAR-100"


class WA(ExemplarStrategy):
    name = "wa"
    paper = "Zhao et al., Maintaining Discrimination and Fairness in Class Incremental Learning, CVPR 2020"
    help = "(1-l)*CE + l*KD with l = C_old/C_total, head weights clipped >= 0, weight aligning after each task"
    settings = (
        *training_settings(0.1, momentum=0.9, weight_decay=2e-4, source=PYCIL),
        *replay_settings(("herding", "class-balanced"), replay_batches=False),
        TEMPERATURE.with_default(2.0, PYCIL),
    )

    def check_model(self, model: ContinualModel) -> None:
        if not model.head.aligns_by_rows:
            raise UsageError(f"wa aligns the rows of a linear head; the {model.head.kind} head's logits do not scale "
                             "with its rows")

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """(1 - C_old / C_total) * CE + (C_old / C_total) * KL(teacher/T || student/T) on the old units."""
        return old_share_weighted_loss(ctx, step, self.hparams["temperature"])

    def after_step(self, ctx: TaskContext, step: Step) -> None:
        """Weight clipping: every weight of the head becomes max(w, 0) (the biases are left as they are)."""
        with torch.no_grad():
            for block in ctx.model.head.blocks:
                block.weight.clamp_(min=0.0)

    def after_task(self, ctx: TaskContext) -> None:
        align_weights(ctx)
        super().after_task(ctx)  # exemplars and class means from the aligned model
