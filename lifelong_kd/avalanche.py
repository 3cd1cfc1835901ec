"""Avalanche integration (avalanche-lib 0.6).

- Plugins that add our distillation terms to any Avalanche strategy, e.g.
  ``Naive(model=..., optimizer=..., plugins=[LwFDistillationPlugin(alpha=1.0, temperature=2.0)])``.
  The teacher is a frozen snapshot taken after each experience, in eval mode
  with no gradients (Avalanche's own LwF copies the model in train mode).
- Adapters both ways: ``from_avalanche_benchmark`` turns any class-incremental
  Avalanche benchmark (``SplitCIFAR10(...)``) into a ``TaskStream`` for our
  runner; ``to_avalanche_benchmark`` exposes a ``TaskStream`` to Avalanche.
- ``accuracy_matrix_from_avalanche`` builds our accuracy matrix from
  ``strategy.eval(test_stream)`` results, so our metrics and plots apply.

Needs the extra: ``pip install "lifelong_kd[avalanche]"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

try:
    from avalanche.benchmarks import nc_benchmark
    from avalanche.models.utils import avalanche_forward
    from avalanche.training.plugins import SupervisedPlugin
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lifelong_kd.avalanche needs avalanche-lib: pip install \"lifelong_kd[avalanche]\""
    ) from error

from .data import Dataset, TaskStream, split_into_tasks
from .losses import kl_distillation, mse_distillation
from .runner import frozen_copy

__all__ = [
    "KDMSEPlugin",
    "LwFDistillationPlugin",
    "TeacherDistillationPlugin",
    "accuracy_matrix_from_avalanche",
    "from_avalanche_benchmark",
    "to_avalanche_benchmark",
]


class TeacherDistillationPlugin(SupervisedPlugin):
    """Adds ``alpha * term(student, teacher)`` on the old classes' logits to the loss.

    After each training experience the model is snapshotted (deep copy,
    ``eval()``, ``requires_grad_(False)``; one alive at a time) and its classes
    join the old ones. In ``before_backward`` the teacher runs on the
    minibatch under ``torch.inference_mode`` and the term is added to
    ``strategy.loss``. Works with plain models and with Avalanche's
    ``IncrementalClassifier`` / ``MultiHeadClassifier`` (through
    ``avalanche_forward``): only the old classes' columns are compared.
    """

    def __init__(self, alpha: float, term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.alpha = alpha
        self.term = term
        self.teacher: nn.Module | None = None
        self.old_classes: list[int] = []
        self.last_term: torch.Tensor | None = None

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.teacher is None or not self.old_classes:
            return
        with torch.inference_mode():
            teacher_logits = avalanche_forward(self.teacher, strategy.mb_x, strategy.mb_task_id)
        old = torch.as_tensor(self.old_classes, device=strategy.mb_output.device)
        term = self.term(strategy.mb_output[:, old], teacher_logits.clone()[:, old])
        self.last_term = term.detach()
        strategy.loss += self.alpha * term

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.teacher = None
        self.teacher = frozen_copy(strategy.model)
        seen = set(self.old_classes) | {int(c) for c in strategy.experience.classes_in_this_experience}
        self.old_classes = sorted(seen)


class LwFDistillationPlugin(TeacherDistillationPlugin):
    """LwF (Li & Hoiem 2017): ``alpha * KL(softmax(t/T) || softmax(s/T))`` on the old
    classes' logits, times T^2 when ``scale_by_t2`` (see ``losses.kl_distillation``)."""

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0, scale_by_t2: bool = False) -> None:
        super().__init__(alpha, lambda s, t: kl_distillation(s, t, temperature, scale_by_t2))
        self.temperature = temperature
        self.scale_by_t2 = scale_by_t2


class KDMSEPlugin(TeacherDistillationPlugin):
    """Logit matching: ``alpha * mean (s - t)^2`` on the old classes' logits (see ``losses.mse_distillation``)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha, mse_distillation)


class _Normalise:
    """uint8 image tensor (C, H, W) -> (x / 255 - mean) / std, as float32."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std


def to_avalanche_benchmark(stream: TaskStream, augment: bool = True) -> Any:
    """The stream as an Avalanche class-incremental benchmark (``nc_benchmark``).

    Labels are the stream's (positions in its class order), experiences hold
    the same classes in the same order; the train transform is the stream's
    random crop / flip (per sample, torchvision) and normalisation.
    """
    from torchvision import transforms

    normalise = _Normalise(stream.mean, stream.std)
    steps: list[Callable] = []
    if augment and stream.crop_padding:
        steps.append(transforms.RandomCrop(stream.image_shape[1:], padding=stream.crop_padding))
    if augment and stream.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    train_x = torch.cat([task.train.x for task in stream])
    train_y = torch.cat([task.train.y for task in stream])
    test_x = torch.cat([task.test.x for task in stream])
    test_y = torch.cat([task.test.y for task in stream])
    return nc_benchmark(
        torch.utils.data.TensorDataset(train_x, train_y),
        torch.utils.data.TensorDataset(test_x, test_y),
        n_experiences=len(stream),
        task_labels=False,
        shuffle=False,
        fixed_class_order=list(range(stream.num_classes)),
        train_transform=transforms.Compose([*steps, normalise]),
        eval_transform=normalise,
    )


def _raw_split(experience_dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) images and labels of an experience's dataset, transforms removed."""
    # the dataset's own current group, emptied: in avalanche-lib 0.6 switching groups first
    # (.train() / .eval()) and then emptying leaves the original group's transform applied
    dataset = experience_dataset.remove_current_transform_group()
    images, labels = [], []
    for item in dataset:
        x, y = item[0], item[1]
        array = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if not isinstance(x, torch.Tensor):  # PIL: H, W, C
            array = array.reshape(array.shape[0], array.shape[1], -1).transpose(2, 0, 1)
        images.append(array.astype(np.uint8))
        labels.append(int(y))
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def from_avalanche_benchmark(benchmark: Any, name: str = "avalanche", hflip: bool = True,
                             crop_padding: int = 4) -> TaskStream:
    """A ``TaskStream`` holding the benchmark's experiences, classes and order.

    Images are read without the benchmark's transforms (uint8); the class
    order is the concatenation of the experiences' classes, so task i holds
    experience i's classes.
    """
    train = [_raw_split(exp.dataset) for exp in benchmark.train_stream]
    test = [_raw_split(exp.dataset) for exp in benchmark.test_stream]
    order = [int(c) for exp in benchmark.train_stream for c in sorted(exp.classes_in_this_experience)]
    num_classes = max(order) + 1
    dataset = Dataset(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
        np.concatenate([x for x, _ in test]), np.concatenate([y for _, y in test]),
        tuple(str(c) for c in range(num_classes)),
    )
    return split_into_tasks(dataset, name, len(train), order, hflip=hflip, crop_padding=crop_padding)


def accuracy_matrix_from_avalanche(results: Sequence[dict[str, float]], n_experiences: int,
                                   stream: str = "test_stream") -> list[list[float]]:
    """R[i][j] (percent) from the dicts ``strategy.eval(test_stream)`` returned after each
    training experience i, reading ``Top1_Acc_Exp/eval_phase/<stream>[/TaskNNN]/ExpJJJ``."""
    matrix = []
    for result in results:
        row = []
        for j in range(n_experiences):
            pattern = re.compile(rf"^Top1_Acc_Exp/eval_phase/{stream}(/Task\d+)?/Exp{j:03d}$")
            values = [v for k, v in result.items() if pattern.match(k)]
            if not values:
                raise KeyError(f"no Top1_Acc_Exp result for experience {j}: add accuracy_metrics(experience=True)")
            row.append(100.0 * float(values[0]))
        matrix.append(row)
    return matrix
