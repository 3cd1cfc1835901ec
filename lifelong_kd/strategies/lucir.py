"""LUCIR (Hou et al., Learning a Unified Classifier Incrementally via Rebalancing, CVPR 2019).

On herding exemplars that join the training set (``ExemplarStrategy``), with the features before
the last ReLU and a cosine head (``CosineClassifier``):
- Cosine normalisation (Eq. 4): logit_k = sigma * cos(theta_k, f), sigma learnt; CE on it.
- Less-forget constraint (Eq. 6-7): lambda * (1 - cos(f*(x), f(x))) on the normalised features of
  the teacher f* and the student f, with lambda = lambda_base * sqrt(|C_old| / |C_new|).
- Inter-class separation (Eq. 8): margin ranking of each exemplar's true score against the K
  hardest new-class scores (``losses.margin_ranking``).
- The old classes' embeddings are frozen (lr 0 in the authors' code) and the new ones imprinted
  from the normalised class-mean features before the task (Sec. 3.2; ``CosineClassifier.imprint``).
- The accuracy of the CNN (the cosine head) and of the NME classifier are both reported.
Defaults: the paper's CIFAR-100 setting (Sec. 4.1; the authors' ``class_incremental_cosine_cifar100.py``):
lr 0.1, momentum 0.9, weight decay 5e-4, lambda_base 5, K 2, m 0.5, exemplars chosen by herding (the
paper keeps 20 per class; here the memory is M in all, M // C per seen class, as for every replay method).
Class-balanced fine-tuning of the head (Sec. 3.4), the paper's option, is off by default;
``--finetune-epochs 20`` gives the authors' (``cbf_class_incremental_cosine_cifar100.py``: 20 epochs at
lr 0.01, the whole head with the backbone frozen, CE and margin ranking; its lr step at epoch 10 is not
reproduced).
"""

import math

import torch

from ..context import Phase, Step, TaskContext
from ..losses import cosine_feature_distillation, margin_ranking
from ..settings import Group, Setting, training_settings
from .base import classification_loss
from .exemplars import ExemplarStrategy
from .replay import replay_settings

PAPER = "LUCIR paper Sec. 4.1, CIFAR-100; the authors' code"


class LUCIR(ExemplarStrategy):
    name = "lucir"
    paper = "Hou et al., Learning a Unified Classifier Incrementally via Rebalancing, CVPR 2019"
    help = "cosine head + less-forget feature constraint + margin ranking on the hardest new classes"
    head = "cosine"
    requires_head = True
    features_before_relu = True
    settings = (
        *training_settings(0.1, momentum=0.9, weight_decay=5e-4, source=PAPER),
        *replay_settings(("herding", "class-balanced"), replay_batches=False),
        Setting("lambda_base", 5.0, "LUCIR's less-forget weight lambda_base", low=0.0, source=PAPER),
        Setting("hard_negatives", 2, "LUCIR's K: new classes ranked below each exemplar's class", low=1,
                source=PAPER),
        Setting("margin", 0.5, "LUCIR's margin m of the ranking loss", low=0.0, source=PAPER),
        Setting("finetune_epochs", 0, "epochs of class-balanced fine-tuning of the head after each task (0: none)",
                low=0, source="LUCIR's option, off (20 in the authors' cbf script)", group=Group.TRAINING),
        Setting("finetune_lr", 0.01, "learning rate of the class-balanced fine-tuning", low=0.0, low_open=True,
                source="the authors' cbf script", group=Group.TRAINING),
    )

    def before_task(self, ctx: TaskContext) -> None:
        """Imprint the new classes' rows from the current model's class-mean features (not in the first task)."""
        super().before_task(ctx)
        if ctx.n_old:
            train = ctx.task.train
            ctx.model.head.imprint(ctx.features_of(train.x), train.y.to(ctx.device))

    def phases(self, ctx: TaskContext, epochs: int) -> tuple[Phase, ...]:
        """After the first task: the main phase trains everything but the old classes' rows; the
        class-balanced fine-tuning of the head follows when asked for."""
        if not ctx.n_old:
            return super().phases(ctx, epochs)
        main = self.main_phase_without_old_rows(ctx, epochs)
        if not self.hparams["finetune_epochs"]:
            return (main,)
        return main, self.balanced_finetuning(self.hparams["finetune_epochs"], self.hparams["finetune_lr"],
                                              self.finetuning_loss)

    def finetuning_loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """CE + margin ranking: the loss of the authors' class-balanced fine-tuning, whose less-forget term
        is constant with the backbone frozen."""
        return classification_loss(ctx, step.y, step.logits) + self.ranking(ctx, step)

    def ranking(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """The margin ranking of the step's old-class rows, averaged over the global batch's pairs."""
        hard = min(int(self.hparams["hard_negatives"]), ctx.n_seen - ctx.n_old)
        compared = ctx.dist.mean((step.y < ctx.n_old).sum() * hard) if ctx.dist.active else None
        cosines = step.logits[:, : ctx.n_seen] / ctx.model.head.sigma
        return margin_ranking(cosines, step.y, ctx.n_old, hard, self.hparams["margin"], compared)

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """CE(sigma * cos) + lambda * (1 - cos(f*, f)) + margin ranking of the exemplars."""
        ce = classification_loss(ctx, step.y, step.logits)
        if ctx.teacher is None:
            return ce
        weight = self.hparams["lambda_base"] * math.sqrt(ctx.n_old / (ctx.n_seen - ctx.n_old))
        teacher_features = ctx.teacher_outputs(step.x)[0]
        less_forget = weight * cosine_feature_distillation(step.features, teacher_features)
        return ce + less_forget + self.ranking(ctx, step)
