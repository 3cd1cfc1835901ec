"""Continual-learning metrics from an accuracy matrix.

``R[i, j]`` is the accuracy (percent) on task j's test set after training
task i; rows are tasks trained, columns tasks evaluated. Only the square
block of completed tasks is used, so every function works on a run that
stopped early and for any number of tasks T >= 1. Where a metric needs a
previous task and T = 1 it is 0, as in Avalanche and Mammoth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Matrix = Sequence[Sequence[float | None]] | np.ndarray


def _square(matrix: Matrix) -> np.ndarray:
    """The T x T block of completed tasks as floats (None -> nan, off the used cells)."""
    rows = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] < rows.shape[0]:
        raise ValueError(f"accuracy matrix must be T x N with N >= T >= 1, got shape {rows.shape}")
    return rows[:, : rows.shape[0]]


def final_accuracy(matrix: Matrix) -> float:
    """Average accuracy after the last task: A_T = (1/T) sum_j R[T, j]."""
    r = _square(matrix)
    return float(r[-1].mean())


def average_accuracy_curve(matrix: Matrix) -> list[float]:
    """A_i = (1/i) sum_{j <= i} R[i, j], the average accuracy after each task i."""
    r = _square(matrix)
    return [float(r[i, : i + 1].mean()) for i in range(len(r))]


def average_incremental_accuracy(matrix: Matrix) -> float:
    """Average incremental accuracy (Rebuffi et al., iCaRL, 2017): (1/T) sum_i A_i."""
    return float(np.mean(average_accuracy_curve(matrix)))


def forgetting(matrix: Matrix) -> float:
    """Average forgetting (Chaudhry et al., RWalk, 2018).

        f_j = max_{l < T} R[l, j] - R[T, j],   F = (1/(T-1)) sum_{j < T} f_j

    with l running over the tasks trained from j on (l >= j). Avalanche's
    ``forgetting_metrics`` instead uses R[j, j] - R[T, j] (no max); that is
    ``-bwt`` here.
    """
    r = _square(matrix)
    t = len(r)
    if t == 1:
        return 0.0
    return float(np.mean([r[j : t - 1, j].max() - r[t - 1, j] for j in range(t - 1)]))


def bwt(matrix: Matrix) -> float:
    """Backward transfer (Lopez-Paz & Ranzato, GEM, 2017).

        BWT = (1/(T-1)) sum_{j < T} (R[T, j] - R[j, j])

    Negative values mean forgetting.
    """
    r = _square(matrix)
    t = len(r)
    if t == 1:
        return 0.0
    return float(np.mean([r[t - 1, j] - r[j, j] for j in range(t - 1)]))


def fwt(matrix: Matrix, baseline: Sequence[float]) -> float:
    """Forward transfer (Lopez-Paz & Ranzato, GEM, 2017).

        FWT = (1/(T-1)) sum_{j >= 2} (R[j-1, j] - b_j)

    where ``b_j`` is the accuracy on task j of the model before any training.
    It needs the accuracy on a task before it is trained, so a head with
    units for future classes (``--head fixed``).
    """
    rows = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    t = rows.shape[0]
    if t == 1:
        return 0.0
    if rows.shape[1] < t or len(baseline) < t:
        raise ValueError("FWT needs the accuracy on each task before training it and a baseline per task")
    return float(np.mean([rows[j - 1, j] - baseline[j] for j in range(1, t)]))


def task_curves(matrix: Matrix) -> list[list[float]]:
    """Per-task curves: curve j is [R[j, j], R[j+1, j], ..., R[T, j]]."""
    r = _square(matrix)
    return [r[j:, j].tolist() for j in range(len(r))]


def intransigence(matrix: Matrix, reference: Matrix) -> tuple[float, list[float]]:
    """Intransigence (Chaudhry et al., RWalk, ECCV 2018): how much less a run learns each new task
    than a reference that learns it without the continual constraint.

        I_k = a*_k - R[k, k],   I = (1/T) sum_k I_k

    where R[k, k] is the run's accuracy on task k right after learning it and a*_k = R*[k, k] the
    reference run's (a joint run, trained on the data of tasks 0..k) accuracy on task k after
    task k. Over the run's T completed tasks; returns (I, [I_0, ..., I_{T-1}]). Positive: the run
    learns the new task worse than the reference.
    """
    r, ref = _square(matrix), _square(reference)
    if len(ref) < len(r):
        raise ValueError(f"the reference run completed {len(ref)} tasks, fewer than the {len(r)} of the run: "
                         "intransigence needs its accuracy after each of the run's tasks")
    per_task = [float(ref[k, k] - r[k, k]) for k in range(len(r))]
    return float(np.mean(per_task)), per_task


def average_anytime_accuracy(points: Sequence[Mapping[str, Any]]) -> float:
    """Average anytime accuracy (A_AUC of Koh et al., "Online Continual Learning on Class Incremental
    Blurry Task Configuration with Anytime Inference", ICLR 2022), normalised by the number of points.

        A_anytime = (1/N) sum_{n=1}^{N} A(n * every)

    where A(s) is the class-IL accuracy (mean over the tasks seen) evaluated after optimiser step s,
    the evaluation points taken every ``every`` steps during training (``results.json``'s
    ``anytime.points``, their ``class_il`` values). It is the area under the accuracy-vs-steps curve
    over its length, so it rewards a run that is accurate throughout training, not only at task ends.
    """
    if not points:
        raise ValueError("average anytime accuracy needs at least one evaluation point")
    return float(np.mean([point["class_il"] for point in points]))


def summary(matrix: Matrix) -> dict[str, float]:
    """The four headline metrics of one accuracy matrix."""
    return {
        "final_accuracy": final_accuracy(matrix),
        "average_incremental_accuracy": average_incremental_accuracy(matrix),
        "forgetting": forgetting(matrix),
        "bwt": bwt(matrix),
    }
