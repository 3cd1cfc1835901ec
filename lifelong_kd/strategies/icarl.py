"""iCaRL (Rebuffi et al., CVPR 2017).

- Loss: sigmoid binary cross-entropy on every seen unit; the old units'
  targets are the teacher's sigmoids (distillation), the others the one-hot
  label (Alg. 3).
- Exemplars (herding), their joining the training set, and the nearest-mean-of-exemplars
  classifier: ``ExemplarStrategy``; the linear head's accuracy is reported beside it.
Defaults: the DER paper's Seq-CIFAR-10 grid (appendix): lr 0.1, weight decay 1e-5.
"""

import torch

from ..context import Step, TaskContext
from ..losses import sigmoid_distillation
from ..settings import training_settings
from .exemplars import ExemplarStrategy
from .replay import replay_settings


class ICaRL(ExemplarStrategy):
    name = "icarl"
    paper = "Rebuffi et al., iCaRL: Incremental Classifier and Representation Learning, CVPR 2017"
    help = "herding exemplars + sigmoid-BCE distillation + nearest-mean-of-exemplars classifier"
    settings = (
        *training_settings(0.1, weight_decay=1e-5, source="DER paper appendix, Seq-CIFAR-10 'iCaRL' grid"),
        *replay_settings(("herding", "class-balanced"), replay_batches=False),  # exemplars join the training set
    )

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        teacher = ctx.teacher_logits(step.x)[:, : ctx.n_old] if ctx.teacher is not None else None
        return sigmoid_distillation(step.logits[:, : ctx.n_seen], step.y, teacher)
