"""Options any strategy can switch on: weight aligning and feature distillation.

Design: ``lifelong_kd/DESIGN.md``, "A method is one file".
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .context import Step, TaskContext
from .errors import UsageError
from .losses import cosine_feature_distillation
from .models import ContinualModel


class Option:
    """An extra loss term and/or end-of-task action added to any strategy."""

    name = "option"

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor | None:
        return None

    def check_model(self, model: ContinualModel) -> None:
        """Raise ``UsageError`` when the option cannot work with ``model``."""

    def after_task(self, ctx: TaskContext) -> None:
        """Called after the strategy's ``after_task``, before the teacher snapshot."""

    def record(self) -> dict[str, Any]:
        """The option's name and parameters, as results.json records them."""
        return {"name": self.name, **vars(self)}


class WeightAligning(Option):
    """Weight aligning alone, after each task, on any strategy (``--wa``; ``align_weights``).

    This is WA's post-hoc step only: the whole method, with its weighted distillation and weight
    clipping, is the ``wa`` strategy.
    """

    name = "wa"

    def check_model(self, model: ContinualModel) -> None:
        if not model.head.aligns_by_rows:
            raise UsageError(f"--wa aligns the rows of a linear head; the {model.head.kind} head's logits do not "
                             "scale with its rows")

    def after_task(self, ctx: TaskContext) -> None:
        align_weights(ctx)


def align_weights(ctx: TaskContext) -> None:
    """Weight aligning (Zhao et al., Maintaining Discrimination and Fairness in Class Incremental
    Learning, CVPR 2020, Eq. 8): the new classes' rows become gamma * w_new with

        gamma = mean_k ||w_old,k|| / mean_k ||w_new,k||

    The bias rows are scaled too, so the new logits are exactly gamma times what they were. Nothing
    happens in the first task (no old classes).
    """
    if ctx.n_old == 0:
        return
    with torch.no_grad():
        norms = ctx.model.head.weight.norm(dim=1)
        gamma = norms[: ctx.n_old].mean() / norms[ctx.n_old : ctx.n_seen].mean()
        ctx.model.head.scale_rows(ctx.n_old, ctx.n_seen, gamma)


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
