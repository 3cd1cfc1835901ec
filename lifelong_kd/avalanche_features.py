"""Avalanche plugins for the distillation terms of LUCIR, PODNet and BiC (avalanche-lib 0.6).

Each adds to any Avalanche strategy's loss the term our strategy computes, in ``before_backward``,
with the teacher a frozen snapshot of the model taken after each training experience (eval mode,
no gradients), and the class counts of the experiences seen:

- ``LessForgetPlugin``: LUCIR's less-forget constraint (Hou et al. 2019, Eq. 6-7) on the input of
  the model's classifier, ``lambda_base * sqrt(n_old / n_new) * mean(1 - cos(f, f*))``;
- ``PODPlugin``: PODNet's POD-spatial on the outputs of the named stage modules and POD-flat on the
  classifier's input (Douillard et al. 2020, Eq. 2-5), with the adaptive factor sqrt(n_seen / n_new);
- ``BiCDistillationPlugin``: BiC's loss (Wu et al. 2019, Eq. 4): the strategy's loss, its CE,
  becomes ``(1 - n/(n+m)) * CE + n/(n+m) * KL(t/T || s/T)`` on the n old classes' logits.
  Place it before any plugin that adds a term of its own.

``classifier`` names the module whose input is the feature vector (``"head"`` in our models,
``"1"`` in ``nn.Sequential(backbone, classifier)``); ``stages`` name the modules whose outputs PODNet
distils. Their values are read with forward hooks during the strategy's own forward: no extra
student forward.

Needs the extra: ``pip install "lifelong_kd[avalanche]"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .avalanche import SupervisedPlugin
from .losses import cosine_feature_distillation, kl_distillation, pod_spatial
from .models import frozen_copy

__all__ = ["BiCDistillationPlugin", "LessForgetPlugin", "PODPlugin"]


class SnapshotPlugin(SupervisedPlugin):
    """The teacher snapshot and the class counts; captures the inputs of ``classifier`` and the outputs
    of ``stages`` during the student's forward (``captured``) and, on request, the teacher's."""

    def __init__(self, classifier: str = "head", stages: Sequence[str] = ()) -> None:
        super().__init__()
        self.classifier, self.stages = classifier, tuple(stages)
        self.teacher: nn.Module | None = None
        self.old_classes: set[int] = set()
        self.new_classes: set[int] = set()
        self.captured: dict[str, torch.Tensor] = {}
        self._hooks: list[Any] = []

    def _hook(self, model: nn.Module, store: dict[str, torch.Tensor]) -> list[Any]:
        modules = dict(model.named_modules())
        hooks = [modules[self.classifier].register_forward_pre_hook(
            lambda module, inputs: store.__setitem__("features", inputs[0]))]
        for name in self.stages:
            hooks.append(modules[name].register_forward_hook(
                lambda module, inputs, output, name=name: store.__setitem__(name, output)))
        return hooks

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.new_classes = {int(c) for c in strategy.experience.classes_in_this_experience}

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        self.captured = {}
        self._hooks = self._hook(strategy.model, self.captured)

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def teacher_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The teacher's logits and captures for ``x``, without autograd, cloned out of inference mode."""
        store: dict[str, torch.Tensor] = {}
        hooks = self._hook(self.teacher, store)
        try:
            with torch.inference_mode():
                logits = self.teacher(x)
        finally:
            for hook in hooks:
                hook.remove()
        return logits.clone(), {name: value.clone() for name, value in store.items()}

    @property
    def n_old(self) -> int:
        return len(self.old_classes - self.new_classes)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.teacher = None
        self.teacher = frozen_copy(strategy.model)
        self.old_classes |= self.new_classes


class LessForgetPlugin(SnapshotPlugin):
    """LUCIR's less-forget constraint: ``lambda_base * sqrt(n_old / n_new) * mean_i (1 - cos(f_i, f*_i))``
    (``losses.cosine_feature_distillation``), lambda_base 5 as in LUCIR's CIFAR-100 setting."""

    def __init__(self, lambda_base: float = 5.0, classifier: str = "head") -> None:
        super().__init__(classifier)
        self.lambda_base = lambda_base

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.teacher is None or not self.n_old:
            return
        _, teacher = self.teacher_outputs(strategy.mb_x)
        weight = self.lambda_base * math.sqrt(self.n_old / len(self.new_classes))
        strategy.loss += weight * cosine_feature_distillation(self.captured["features"], teacher["features"])


class PODPlugin(SnapshotPlugin):
    """PODNet's pooled distillation: ``sqrt(n_seen / n_new) * (spatial * POD-spatial(stages) + flat *
    (1 - cos) on the features)``, weights 3 and 1 as in PODNet's CIFAR-100 options."""

    def __init__(self, stages: Sequence[str], spatial: float = 3.0, flat: float = 1.0,
                 classifier: str = "head") -> None:
        super().__init__(classifier, stages)
        self.spatial, self.flat = spatial, flat

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.teacher is None or not self.n_old:
            return
        _, teacher = self.teacher_outputs(strategy.mb_x)
        n_seen = self.n_old + len(self.new_classes)
        adaptive = math.sqrt(n_seen / len(self.new_classes))
        spatial = pod_spatial([self.captured[name] for name in self.stages], [teacher[name] for name in self.stages])
        flat = cosine_feature_distillation(self.captured["features"], teacher["features"])
        strategy.loss += adaptive * (self.spatial * spatial + self.flat * flat)


class BiCDistillationPlugin(SnapshotPlugin):
    """BiC's weighted loss: ``strategy.loss`` (the CE) becomes ``(1 - l) * CE + l * KL(t/T || s/T)`` on the
    old classes' logits, ``l = n_old / n_seen``, T 2 (``losses.kl_distillation``, no T^2)."""

    def __init__(self, temperature: float = 2.0, classifier: str = "head") -> None:
        super().__init__(classifier)
        self.temperature = temperature

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.teacher is None or not self.n_old:
            return
        teacher, _ = self.teacher_outputs(strategy.mb_x)
        old = torch.as_tensor(sorted(self.old_classes - self.new_classes), device=teacher.device)
        share = self.n_old / (self.n_old + len(self.new_classes))
        kd = kl_distillation(strategy.mb_output[:, old], teacher[:, old], self.temperature)
        strategy.loss = (1.0 - share) * strategy.loss + share * kd
