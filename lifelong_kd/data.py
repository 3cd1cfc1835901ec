"""Task streams for class-incremental learning.

A :class:`TaskStream` is a dataset cut into tasks of equally many classes. Labels are remapped to
positions in the class order (``class_order[j]`` is the original label of remapped class ``j``), so
task ``i`` holds remapped classes ``range(i * k, (i + 1) * k)`` with ``k = num_classes // n_tasks``.
Images stay uint8 (N, C, H, W) tensors; normalisation and augmentation happen on the fly elsewhere.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from .datasets import benchmark_spec, load_dataset, load_digits_dataset
from .errors import UsageError
from .raw import Dataset


@dataclass(frozen=True, eq=False)
class Split:
    """Images and remapped labels of one task's train or test part."""

    x: torch.Tensor  # uint8 (N, C, H, W), contiguous, CPU
    y: torch.Tensor  # int64 (N,), remapped labels

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class Task:
    """One task: its (contiguous) remapped classes and its data."""

    index: int
    classes: tuple[int, ...]
    train: Split
    test: Split


@dataclass(frozen=True, eq=False)
class TaskStream:
    """A sequence of tasks plus what is needed to normalise and augment their images."""

    name: str
    tasks: tuple[Task, ...]
    class_order: tuple[int, ...]  # original label id at each remapped position
    class_names: tuple[str, ...]  # indexed by ORIGINAL label id
    mean: tuple[float, ...]  # per channel, training images in [0, 1]
    std: tuple[float, ...]
    hflip: bool = True
    crop_padding: int = 4

    @property
    def num_classes(self) -> int:
        """Number of classes over all tasks."""
        return len(self.class_order)

    @cached_property
    def task_of_class(self) -> tuple[int, ...]:
        """The task of each (remapped) class: tasks may differ in size (``--first-task-classes``)."""
        return tuple(task.index for task in self.tasks for _ in task.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.tasks[0].train.x.shape[1:]
        return c, h, w

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]


def _parse_order(order: str | Sequence[int]) -> list[int]:
    items = order.split(",") if isinstance(order, str) else order
    try:
        return [int(o) if isinstance(o, str) else operator.index(o) for o in items]
    except (TypeError, ValueError) as e:
        raise UsageError(
            f"bad class order {order!r}: pass --class-order fixed, random, or comma-separated class ids"
        ) from e


def class_order_for(num_classes: int, order: str | Sequence[int], seed: int) -> tuple[int, ...]:
    """The original class id at each remapped position.

    ``order`` is "fixed" (0..N-1), "random" (a permutation seeded by ``seed``), or an explicit
    permutation of 0..N-1 (a sequence of ints or a comma-separated string).
    """
    if isinstance(order, str) and order == "fixed":
        return tuple(range(num_classes))
    if isinstance(order, str) and order == "random":
        return tuple(int(c) for c in np.random.default_rng(seed).permutation(num_classes))
    ids = _parse_order(order)
    if sorted(ids) != list(range(num_classes)):
        raise UsageError(
            f"class order {ids} is not a permutation of 0..{num_classes - 1}: pass --class-order fixed, "
            f"random, or all {num_classes} class ids once each, comma-separated"
        )
    return tuple(ids)


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 images scaled to [0, 1], via histograms."""
    images = torch.from_numpy(x)
    hist = torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])]).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = hist @ values / hist.sum(1)
    std = (hist @ values**2 / hist.sum(1) - mean**2).clamp(min=0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _balanced_subset(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices keeping min(per_class, available) random samples of each class."""
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        for idx in (np.flatnonzero(y == c) for c in np.unique(y))
    ]
    return np.sort(np.concatenate(keep))


def task_bounds(num_classes: int, n_tasks: int, first_task_classes: int | None = None) -> list[int]:
    """Where each task's classes start, and the end: ``n_tasks`` equal tasks, or (LUCIR's and PODNet's
    B50 protocols) a first task of ``first_task_classes`` and ``n_tasks - 1`` equal ones after it."""
    if n_tasks < 1:
        raise UsageError(f"--n-tasks must be at least 1 (got {n_tasks})")
    if first_task_classes is None:
        if num_classes % n_tasks:
            divisors = ", ".join(str(d) for d in range(1, num_classes + 1) if num_classes % d == 0)
            raise UsageError(
                f"{num_classes} classes do not split into {n_tasks} tasks: choose --n-tasks from {divisors}")
        return list(range(0, num_classes + 1, num_classes // n_tasks))
    rest = num_classes - first_task_classes
    if not 0 < first_task_classes < num_classes:
        raise UsageError(f"--first-task-classes {first_task_classes}: use 1 to {num_classes - 1}")
    if n_tasks < 2 or rest % (n_tasks - 1):
        choices = ", ".join(str(d + 1) for d in range(1, rest + 1) if rest % d == 0)
        raise UsageError(f"the {rest} classes after a first task of {first_task_classes} do not split into "
                         f"{n_tasks - 1} equal tasks: choose --n-tasks from {choices}")
    return [0, *range(first_task_classes, num_classes + 1, rest // (n_tasks - 1))]


def _task_split(x: np.ndarray, y: np.ndarray, lo: int, hi: int) -> Split:
    idx = np.flatnonzero((y >= lo) & (y < hi))
    return Split(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))  # fancy indexing: contiguous copies


def split_into_tasks(
    dataset: Dataset,
    name: str,
    n_tasks: int,
    class_order: str | Sequence[int] = "fixed",
    *,
    max_train_per_class: int | None = None,
    seed: int = 0,
    hflip: bool = True,
    crop_padding: int = 4,
    first_task_classes: int | None = None,
) -> TaskStream:
    """Cut ``dataset`` into ``n_tasks`` tasks of consecutive classes of ``class_order``
    (``class_order_for``: fixed, random from ``seed``, or a permutation; resolved here, once).

    Labels become positions in ``class_order``. ``max_train_per_class`` keeps a seeded, class-balanced
    subset of the training data (test data stays whole). mean/std come from all training images.
    Within a task samples keep the dataset's order.
    """
    num_classes = len(dataset.class_names)
    bounds = task_bounds(num_classes, n_tasks, first_task_classes)
    if max_train_per_class is not None and max_train_per_class < 1:
        raise UsageError(f"--max-train-per-class must be at least 1 (got {max_train_per_class}); omit it to keep all")
    order = class_order_for(num_classes, class_order, seed)
    remap = np.empty(num_classes, dtype=np.int64)
    remap[list(order)] = np.arange(num_classes)
    mean, std = _channel_stats(dataset.train_x)
    train_x, train_y = dataset.train_x, remap[dataset.train_y]
    if max_train_per_class is not None:
        keep = _balanced_subset(train_y, max_train_per_class, seed)
        train_x, train_y = train_x[keep], train_y[keep]
    test_y = remap[dataset.test_y]
    tasks = tuple(
        Task(
            index=i,
            classes=tuple(range(low, high)),
            train=_task_split(train_x, train_y, low, high),
            test=_task_split(dataset.test_x, test_y, low, high),
        )
        for i, (low, high) in enumerate(zip(bounds, bounds[1:]))
    )
    return TaskStream(name, tasks, order, dataset.class_names, mean, std, hflip, crop_padding)


def concat_splits(splits: list[Split]) -> Split:
    """One split holding the samples of all ``splits`` in order."""
    return Split(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


def make_stream(
    benchmark: str,
    *,
    data_root: Path | None = None,
    n_tasks: int | None = None,
    class_order: str | Sequence[int] = "fixed",
    seed: int = 0,
    max_train_per_class: int | None = None,
    cache_dir: Path | None = None,
    download: bool = False,
    first_task_classes: int | None = None,
) -> TaskStream:
    """Build the task stream of a registered benchmark (see ``BENCHMARKS``); the CLI's entry point.

    split-digits needs no files and ignores ``data_root``; its train/test split is fixed (seed 0) so
    that runs with different seeds are evaluated on the same test set.
    """
    spec = benchmark_spec(benchmark)
    n_tasks = spec.default_tasks if n_tasks is None else n_tasks
    if n_tasks is None:
        raise UsageError(f"{benchmark} has no default task count: pass --n-tasks N, N dividing the number of classes")
    if spec.name == "split-digits":
        dataset = load_digits_dataset()
    else:
        dataset = load_dataset(benchmark, data_root, cache_dir=cache_dir, download=download)
    return split_into_tasks(
        dataset,
        benchmark,
        n_tasks,
        class_order,
        max_train_per_class=max_train_per_class,
        seed=seed,
        first_task_classes=first_task_classes,
        hflip=spec.hflip,
        crop_padding=spec.crop_padding,
    )


def _as_array(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _check_images(x: np.ndarray, what: str) -> None:
    if x.dtype != np.uint8 or x.ndim != 4:
        raise UsageError(f"{what} must be uint8 (N, C, H, W), got {x.dtype} {x.shape}: convert images to uint8 NCHW")


def _check_labels(y: np.ndarray, n: int, what: str) -> None:
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise UsageError(f"{what} must be integer labels of shape ({n},), got {y.dtype} {y.shape}: pass one per image")


def tensor_stream(
    train_x: torch.Tensor | np.ndarray,
    train_y: torch.Tensor | np.ndarray,
    test_x: torch.Tensor | np.ndarray,
    test_y: torch.Tensor | np.ndarray,
    n_tasks: int,
    *,
    name: str = "tensors",
    class_order: str | Sequence[int] = "fixed",
    seed: int = 0,
    hflip: bool = True,
    crop_padding: int = 4,
) -> TaskStream:
    """A task stream from in-memory uint8 (N, C, H, W) images and labels 0..C-1 (all present in train)."""
    x_tr, y_tr, x_te, y_te = (_as_array(a) for a in (train_x, train_y, test_x, test_y))
    _check_images(x_tr, "train_x")
    _check_images(x_te, "test_x")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise UsageError("train_x and test_x images differ in (C, H, W): give both splits the same image shape")
    _check_labels(y_tr, len(x_tr), "train_y")
    _check_labels(y_te, len(x_te), "test_y")
    num_classes = int(y_tr.max()) + 1 if len(y_tr) else 0
    if num_classes == 0 or y_tr.min() < 0 or len(np.unique(y_tr)) != num_classes:
        raise UsageError("train_y must use every label 0..C-1 at least once: relabel the classes to 0..C-1")
    if len(y_te) and (y_te.min() < 0 or y_te.max() >= num_classes):
        raise UsageError(f"test_y has labels outside 0..{num_classes - 1}: use only labels that occur in train_y")
    names = tuple(str(c) for c in range(num_classes))
    dataset = Dataset(x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), names)
    return split_into_tasks(dataset, name, n_tasks, class_order, seed=seed, hflip=hflip, crop_padding=crop_padding)
