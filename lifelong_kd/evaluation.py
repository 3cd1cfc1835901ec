"""Accuracy of the model on the tasks' test sets: one row of the accuracy matrices.

Class-IL: the arg-max over the units of the classes seen so far only (units
of classes not trained yet never compete, as in Mammoth's ``evaluate``), so a
task whose classes are not seen yet has no class-IL accuracy (``None``).
Task-IL: the arg-max over the evaluated task's own units; ``None`` where the
head has no units for that task or the task was not evaluated.

The backbone runs under ``autocast`` (the evaluation precision); the head and
every score are computed in float32 from the features, so an arg-max never
reads logits rounded to bf16.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

import torch

from .data import TaskStream
from .distributed import Distributed
from .models import ContinualModel

Scores = Callable[[torch.Tensor], dict[str, torch.Tensor]]
TestSet = tuple[torch.Tensor, torch.Tensor]


@torch.inference_mode()
def accuracy_row(
    model: ContinualModel,
    stream: TaskStream,
    test_sets: Sequence[TestSet],
    n_seen: int,
    evaluated: Sequence[int],
    *,
    extra_scores: Scores,
    normalise: Callable[[torch.Tensor], torch.Tensor],
    autocast: Callable[[], AbstractContextManager],
    batch_size: int,
    dist: Distributed | None = None,
) -> dict[str, list[float | None]]:
    """Accuracy (percent) on the test set of every task in ``evaluated``, ``None`` elsewhere.

    Returns ``class_il`` and ``task_il`` for the linear head and
    ``<name>_class_il`` / ``<name>_task_il`` for each of ``extra_scores``
    (e.g. iCaRL's nearest mean of exemplars, ``nme``). On many processes (``dist``) each counts the
    correct answers on its shard of every test set, and the counts are summed.
    """
    dist = dist or Distributed()
    model.eval()
    rows: dict[str, list[float | None]] = {}
    for task in stream:
        if task.index not in evaluated:
            continue
        low, high = task.classes[0], task.classes[-1] + 1
        counts: dict[str, torch.Tensor] = {}
        x_all, y_all = test_sets[task.index]
        total = len(y_all)
        if total == 0:
            continue
        x_all, y_all = x_all[dist.shard(total)], y_all[dist.shard(total)]
        for begin in range(0, max(len(y_all), 1), batch_size):  # an empty shard still counts its zeros
            y = y_all[begin : begin + batch_size]
            with autocast():
                features = model.features(normalise(x_all[begin : begin + batch_size]))
            features = features.float()
            scores = {"": model.head(features), **extra_scores(features)}
            for name, score in scores.items():
                prefix = f"{name}_" if name else ""
                if high <= n_seen:
                    hits = (score[:, :n_seen].argmax(1) == y).sum()
                    counts[f"{prefix}class_il"] = counts.get(f"{prefix}class_il", 0) + hits
                if high <= score.shape[1]:
                    task_hits = (score[:, low:high].argmax(1) + low == y).sum()
                    counts[f"{prefix}task_il"] = counts.get(f"{prefix}task_il", 0) + task_hits
        names = list(counts)  # the same order on every process
        summed = dist.sum(torch.stack([torch.as_tensor(counts[name], device=y_all.device) for name in names]))
        for name, count in zip(names, summed.tolist()):
            row = rows.setdefault(name, [None] * len(stream))
            row[task.index] = 100.0 * count / total
    return rows


def tasks_to_evaluate(stream: TaskStream, model: ContinualModel, task_index: int, eval_future: bool) -> list[int]:
    """The tasks to evaluate after task ``task_index``: the seen ones, and the next one with a fixed
    head (FWT needs R[i, i+1]); with ``eval_future`` every task the head has units for (a future
    task without units can give no accuracy)."""
    if eval_future:
        width = model.num_classes
        return [task.index for task in stream if task.index <= task_index or task.classes[-1] < width]
    last = task_index + 1 if model.head.future_units else task_index
    return list(range(min(last, len(stream) - 1) + 1))
