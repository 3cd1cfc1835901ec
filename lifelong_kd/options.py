"""Options any strategy can switch on: weight aligning and feature distillation."""

from __future__ import annotations

import math
from typing import Any

import torch

from .context import Step, TaskContext
from .heads import scale_rows
from .losses import cosine_feature_distillation


class Option:
    """An extra loss term and/or end-of-task action added to any strategy."""

    name = "option"

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor | None:
        return None

    def after_task(self, ctx: TaskContext) -> None:
        """Called after the strategy's ``after_task``, before the teacher snapshot."""

    def record(self) -> dict[str, Any]:
        """The option's name and parameters, as results.json records them."""
        return {"name": self.name, **vars(self)}


class WeightAligning(Option):
    """Weight aligning (Zhao et al., Maintaining Discrimination and Fairness in
    Class Incremental Learning, CVPR 2020, Eq. 8).

    After each task, gamma = mean_k ||w_old,k|| / mean_k ||w_new,k|| and the new
    classes' rows become gamma * w_new. The bias rows are scaled too, so the
    new logits are exactly gamma times what they were. WA's weight clipping
    during training is not part of this option.
    """

    name = "wa"

    def after_task(self, ctx: TaskContext) -> None:
        if ctx.n_old == 0:
            return
        with torch.no_grad():
            norms = ctx.model.head.weight.norm(dim=1)
            gamma = norms[: ctx.n_old].mean() / norms[ctx.n_old : ctx.n_seen].mean()
            scale_rows(ctx.model.head, ctx.n_old, ctx.n_seen, gamma)


class FeatureDistillation(Option):
    """LUCIR's less-forget constraint (Hou et al., CVPR 2019, Eq. 6-7).

    lambda * mean_i (1 - cos(f(x_i), f_teacher(x_i))) on every sample of the
    step, with the adaptive weight lambda = lambda_base * sqrt(|C_old| / |C_new|)
    and lambda_base = 5 (LUCIR's CIFAR-100 setting).
    """

    name = "feature-kd"

    def __init__(self, weight: float = 5.0) -> None:
        self.weight = weight

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor | None:
        if ctx.teacher is None:
            return None
        adaptive = self.weight * math.sqrt(ctx.n_old / (ctx.n_seen - ctx.n_old))
        teacher_features = ctx.teacher_outputs(step.x)[0]
        return adaptive * cosine_feature_distillation(step.features, teacher_features)
