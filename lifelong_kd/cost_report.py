"""Training cost, anytime accuracy and intransigence of runs: the columns ``compare`` adds and the
numbers the cost plots draw.

A run's *training FLOPs* are ``cost.total.train_flops + cost.total.task_end_flops`` of its
``results.json`` (the training steps and the work at task ends: herding, class means, BiC's fit),
its *train seconds* ``cost.total.train_seconds``. Runs written before these entries existed have
none, and the columns and figures that need them leave such runs out (a dash in the table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import metrics
from .errors import UsageError

Document = dict[str, Any]
Matrix = list[list[float | None]]
TFLOP = 1e12
COST_TOTALS = {"training_flops": ("train_flops", "task_end_flops"), "train_seconds": ("train_seconds",)}


def cost_totals(doc: Document) -> dict[str, float]:
    """A run's ``training_flops`` (train + task-end FLOPs) and ``train_seconds``, summed over its tasks."""
    total = doc["cost"]["total"]
    return {name: float(sum(total[key] for key in keys)) for name, keys in COST_TOTALS.items()}


def task_boundaries(doc: Document) -> list[int]:
    """The global optimiser step at which each task's training ended: cumsum of ``cost.per_task[i].steps``."""
    return np.cumsum([task["steps"] for task in doc["cost"]["per_task"]]).astype(int).tolist()


def intransigence_metrics(matrices: dict[str, Matrix], reference: dict[str, Matrix]) -> dict[str, dict[str, Any]]:
    """Per setting both have, ``intransigence`` and ``intransigence_per_task`` (``metrics.intransigence``)
    of a run's ``matrices`` against a reference run's (a joint run); a ``UsageError`` when the reference
    finished fewer tasks than the run."""
    found = {}
    for setting in matrices.keys() & reference.keys():
        if not matrices[setting]:
            continue
        try:
            mean, per_task = metrics.intransigence(matrices[setting], reference[setting])
        except ValueError as error:
            raise UsageError(f"--reference: {error}") from None
        found[setting] = {"intransigence": mean, "intransigence_per_task": per_task}
    return found


def with_intransigence(docs: Sequence[Document], reference: Document) -> list[Document]:
    """Copies of ``docs`` whose ``metrics[setting]`` gain ``intransigence_metrics`` against ``reference``."""
    updated = []
    for doc in docs:
        found = intransigence_metrics(doc["matrices"], reference["matrices"])
        settings = {setting: {**doc["metrics"][setting], **values} for setting, values in found.items()}
        updated.append({**doc, "metrics": {**doc["metrics"], **settings}})
    return updated


def _class_il(name: str) -> Callable[[Document], dict[str, Any] | None]:
    return lambda agg: agg["metrics"].get("class_il", {}).get(name)


# compare's extra columns: header, the statistics of an aggregate (None: it has none), scale, decimals.
EXTRA_COLUMNS = (
    ("training TFLOPs", lambda agg: agg.get("cost", {}).get("training_flops"), TFLOP, 2),
    ("train s", lambda agg: agg.get("cost", {}).get("train_seconds"), 1.0, 1),
    ("anytime acc", _class_il("average_anytime_accuracy"), 1.0, 2),
    ("intransigence", _class_il("intransigence"), 1.0, 2),
)


def mean_std_cell(stats: dict[str, float] | None, scale: float = 1.0, digits: int = 2) -> str:
    """A table cell: an aggregate's ``mean ± std`` divided by ``scale``, or a dash where it is missing."""
    return "—" if stats is None else f"{stats['mean'] / scale:.{digits}f} ± {stats['std'] / scale:.{digits}f}"


def extra_columns(aggregates: Sequence[Document]) -> list[tuple[str, list[str]]]:
    """The columns of ``EXTRA_COLUMNS`` that some aggregate (``report.aggregate``) has: the header and
    one cell per aggregate, mean ± sample std over seeds (scaled: FLOPs in TFLOPs), a dash where missing.
    ``anytime acc`` and ``intransigence`` are class-IL."""
    columns = []
    for header, statistics, scale, digits in EXTRA_COLUMNS:
        found = [statistics(agg) for agg in aggregates]
        if any(stats is not None for stats in found):
            cells = [mean_std_cell(stats, scale, digits) for stats in found]
            columns.append((header, cells))
    return columns


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """The indices of the (cost, accuracy) points no other point beats, sorted by cost (then index).

    Point j beats point i when ``cost_j <= cost_i`` and ``accuracy_j >= accuracy_i``, strictly
    better in one of the two; equal points do not beat each other, so both stay on the front.
    """
    front = [i for i, (cost, accuracy) in enumerate(points)
             if not any(c <= cost and a >= accuracy and (c < cost or a > accuracy) for c, a in points)]
    return sorted(front, key=lambda i: (points[i][0], i))
