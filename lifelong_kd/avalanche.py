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
    from avalanche.models import MultiTaskModule
    from avalanche.models.utils import avalanche_forward
    from avalanche.training.plugins import ReplayPlugin, SupervisedPlugin
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lifelong_kd.avalanche needs avalanche-lib: pip install \"lifelong_kd[avalanche]\""
    ) from error

from .buffer import ReplayBuffer, ReplaySample
from .data import TaskStream, split_into_tasks
from .losses import kl_distillation, masked_mse_distillation, mse_distillation
from .models import frozen_copy
from .raw import Dataset

__all__ = [
    "DERPlugin",
    "KDMSEPlugin",
    "LwFDistillationPlugin",
    "TeacherDistillationPlugin",
    "accuracy_matrix_from_avalanche",
    "er_kd_plugins",
    "from_avalanche_benchmark",
    "to_avalanche_benchmark",
]


class TeacherDistillationPlugin(SupervisedPlugin):
    """Adds ``alpha * term(student, teacher)`` on the old classes' logits to the loss.

    After each training experience the model is snapshotted (deep copy,
    ``eval()``, ``requires_grad_(False)``; one alive at a time) and the
    experience's classes join the old ones, per task label. In
    ``before_backward`` the teacher runs on the minibatch under
    ``torch.inference_mode`` and the term is added to ``strategy.loss``:

    - a single-head model (a plain model, Avalanche's ``IncrementalClassifier``):
      one term on the columns of every old class;
    - a multi-task model (an Avalanche ``MultiTaskModule`` such as a model with
      a ``MultiHeadClassifier``): as in LwF's multi-head form, the sum over the
      old tasks t of the term on head t's old-class columns, student and
      teacher both evaluated with head t on the minibatch (one student forward
      per old task, as Avalanche's LwF does).
    """

    def __init__(self, alpha: float, term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.alpha = alpha
        self.term = term
        self.teacher: nn.Module | None = None
        self.old_classes_by_task: dict[int, list[int]] = {}

    @property
    def old_classes(self) -> list[int]:
        """Every class of the experiences trained so far, whatever its task."""
        return sorted({c for classes in self.old_classes_by_task.values() for c in classes})

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.teacher is None or not self.old_classes_by_task:
            return
        x = strategy.mb_x
        if isinstance(strategy.model, MultiTaskModule):
            pairs = [
                (strategy.model.forward_single_task(x, task), self._teacher(x, task), classes)
                for task, classes in self.old_classes_by_task.items()
            ]
        else:
            pairs = [(strategy.mb_output, self._teacher(x, strategy.mb_task_id), self.old_classes)]
        for student, teacher, classes in pairs:
            old = torch.as_tensor(classes, device=student.device)
            strategy.loss += self.alpha * self.term(student[:, old], teacher[:, old])

    def _teacher(self, x: torch.Tensor, task: torch.Tensor | int) -> torch.Tensor:
        """The teacher's logits, computed without autograd and cloned out of inference mode."""
        with torch.inference_mode():
            if isinstance(task, int):
                logits = self.teacher.forward_single_task(x, task)
            else:
                logits = avalanche_forward(self.teacher, x, task)
        return logits.clone()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self.teacher = None
        self.teacher = frozen_copy(strategy.model)
        dataset = strategy.experience.dataset
        for task in strategy.experience.task_labels:
            classes = {int(c) for c in dataset.task_set[task].targets.uniques}
            self.old_classes_by_task[task] = sorted(set(self.old_classes_by_task.get(task, [])) | classes)


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


class DERPlugin(SupervisedPlugin):
    """Dark Experience Replay (Buzzega et al. 2020) for any Avalanche strategy; DER++ when ``beta > 0``.

    A reservoir memory of ``mem_size`` samples keeps each minibatch as it
    reached the plugin, with the logits the model produced on it. Each
    iteration a replay batch is appended to the minibatch in
    ``before_forward``, so current and replayed samples go through the model
    in one forward (one set of BatchNorm statistics, as in our runner and
    Avalanche's ``DER``); ``after_forward`` splits the replayed rows off
    again, so the strategy's criterion, the other plugins and the metrics
    see the current minibatch only. ``before_backward`` adds

        alpha * MSE(s(x_buf), z_buf)  [+ beta * CE(s(x_buf'), y_buf')]

    on the units stored (``losses.masked_mse_distillation``), the DER++ term on
    a second, disjoint replay batch. Use a plain model or a head without
    masking: masked logits (Avalanche's -1000) would be stored.

    Augmentation. A plugin sees the minibatch after the benchmark's
    per-sample train transforms, without the dataset indices of its rows, so
    it cannot read a sample again through those transforms as Avalanche's
    ``DER`` does (its buffer is a dataset). Hence:

    - ``augment=f`` (recommended with random augmentation): the plugin owns
      the training augmentation. Build the benchmark with a train transform
      that does not augment, e.g. ``to_avalanche_benchmark(stream,
      augment=False, normalise_train=False)`` (uint8 images), and give
      ``f``, a batch-to-batch transform that runs on the device, e.g.
      ``functools.partial(BatchAugment(mean, std, device=d).train,
      generator=g)``. The memory keeps the un-augmented inputs, and each
      iteration ``f`` is applied once to the whole forward batch, current and
      replayed rows, so every replayed sample gets a fresh view at each draw
      (as in the DER paper, our runner's ``der`` and Avalanche's ``DER``).
      The logits stored are the model's on the augmented view it trained on,
      as in the paper and our runner. A benchmark that still augments would
      be augmented twice: nothing detects it.
    - ``augment=None``: the plugin transforms nothing; the memory keeps the
      minibatch as the model saw it. Right for a benchmark without random
      augmentation; with one, each sample is replayed as the single augmented
      view it was stored with (the behaviour before ``augment`` existed, kept
      to measure what fresh views bring: ``benchmarks/vs_avalanche.py``).
    """

    def __init__(self, mem_size: int = 500, alpha: float = 0.3, beta: float = 0.0,
                 batch_size_mem: int | None = None, seed: int = 0,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.mem_size, self.batch_size_mem, self.seed = mem_size, batch_size_mem, seed
        self.augment = augment
        self.buffer: ReplayBuffer | None = None
        self.generator: torch.Generator | None = None
        self.n_current = 0
        self.current_x: torch.Tensor | None = None
        self.sample: ReplaySample | None = None
        self.replay_logits: torch.Tensor | None = None

    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        if self.buffer is None:
            self.buffer = ReplayBuffer(self.mem_size, strategy.device, self.seed)
            self.generator = torch.Generator(device=strategy.device).manual_seed(self.seed)
        self.current_x = strategy.mb_x
        self.n_current = len(strategy.mb_y)
        count = (self.batch_size_mem or self.n_current) * (2 if self.beta else 1)
        self.sample = self.buffer.sample(count, self.generator)
        if self.sample is not None:
            replayed = (self.sample.x, self.sample.y, self.buffer.task[self.sample.index])
            strategy.mbatch = [torch.cat([own, extra]) for own, extra in zip(strategy.mbatch, replayed)]
        if self.augment is not None:
            strategy.mbatch = [self.augment(strategy.mb_x), *strategy.mbatch[1:]]

    def after_forward(self, strategy: Any, **kwargs: Any) -> None:
        if self.sample is None:
            return
        n = self.n_current
        self.replay_logits = strategy.mb_output[n:]
        strategy.mb_output = strategy.mb_output[:n]
        strategy.mbatch = [part[:n] for part in strategy.mbatch]

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self.sample is None:
            return
        half = len(self.sample) if not self.beta else (len(self.sample) + 1) // 2
        index = self.sample.index[:half]
        strategy.loss += self.alpha * masked_mse_distillation(
            self.replay_logits[:half], self.buffer.logits[index], self.buffer.logit_units[index]
        )
        if self.beta and len(self.sample) > half:
            strategy.loss += self.beta * torch.nn.functional.cross_entropy(
                self.replay_logits[half:], self.sample.y[half:]
            )

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        self.buffer.add_reservoir(
            self.current_x.detach(), strategy.mb_y, strategy.mb_task_id, strategy.mb_output.detach()
        )
        self.current_x = self.sample = self.replay_logits = None


def er_kd_plugins(mem_size: int = 500, alpha: float = 1.0, temperature: float = 2.0) -> list[SupervisedPlugin]:
    """ER + KD for any Avalanche strategy: Avalanche's ``ReplayPlugin`` appends memory samples
    to each minibatch, and ``LwFDistillationPlugin`` distils the old classes' units on all of
    them (current and replayed), as our ``er-kd`` does. Plugin order matters: replay first."""
    return [ReplayPlugin(mem_size=mem_size), LwFDistillationPlugin(alpha=alpha, temperature=temperature)]


class _Normalise:
    """uint8 image tensor (C, H, W) -> (x / 255 - mean) / std, as float32."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std


def to_avalanche_benchmark(stream: TaskStream, augment: bool = True, normalise_train: bool = True) -> Any:
    """The stream as an Avalanche class-incremental benchmark (``nc_benchmark``).

    Labels are the stream's (positions in its class order), experiences hold
    the same classes in the same order; the train transform is the stream's
    random crop / flip (per sample, torchvision; none when ``augment`` is
    False) and normalisation (none when ``normalise_train`` is False), the
    eval transform the normalisation. ``augment=False, normalise_train=False``
    gives the uint8 training images untouched, for augmentation on the
    device (``DERPlugin(augment=...)``).
    """
    from torchvision import transforms

    normalise = _Normalise(stream.mean, stream.std)
    steps: list[Callable] = []
    if augment and stream.crop_padding:
        steps.append(transforms.RandomCrop(stream.image_shape[1:], padding=stream.crop_padding))
    if augment and stream.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    if normalise_train:
        steps.append(normalise)
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
        train_transform=transforms.Compose(steps) if steps else None,
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
