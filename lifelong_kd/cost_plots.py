"""Figures of what the runs cost and of their anytime accuracy (matplotlib, Agg backend).

``plot_cost``: final class-IL accuracy against training cost (FLOPs or seconds), one point per
group of runs with its Pareto front; ``plot_anytime``: the class-IL accuracy evaluated every
``--eval-every`` steps during training. Like ``plots``, each function draws one figure, saves it
to ``path`` (the suffix picks the format) and returns it; runs without the entries a figure needs
(``cost``, ``anytime``: results written before they existed) are left out of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .cost_report import TFLOP, pareto_front, task_boundaries  # noqa: E402
from .errors import UsageError  # noqa: E402
from .plots import _benchmark, _save, _seed_count  # noqa: E402
from .report import (  # noqa: E402
    Document,
    config_labels,
    group_runs,
    is_complete,
    labelled_aggregates,
    mean_and_std,
    seeds_text,
)

COST_AXES = {"flops": ("training_flops", TFLOP, "training compute (TFLOP)"),
             "seconds": ("train_seconds", 1.0, "training time (s)")}


def plot_cost(docs: Sequence[Document], path: Path, axis: str = "flops", title: str | None = None) -> Figure:
    """Final class-IL accuracy (%) against the training cost, one point per group of runs
    (``report.group_runs``) at the mean over seeds with error bars of ± the sample std on both
    axes, each labelled with its ``report.config_labels`` name; the Pareto front (``pareto_front``)
    as a dashed step line. ``axis``: ``flops``, the training FLOPs (train + task-end, in TFLOP), or
    ``seconds``, the total training time."""
    if axis not in COST_AXES:
        raise ValueError(f"axis must be one of {sorted(COST_AXES)}, not {axis!r}")
    key, scale, axis_label = COST_AXES[axis]
    labels, aggregates = labelled_aggregates([doc for doc in docs if "cost" in doc])
    if not aggregates:
        raise UsageError("no run has a cost entry (results written before costs were recorded): re-run them")
    fig, ax = plt.subplots(figsize=(9.0, 5.2))
    colours = plt.get_cmap("tab20").colors  # 20 distinct colours: a dozen strategies stay apart
    points = []
    for index, (label, agg) in enumerate(zip(labels, aggregates)):
        cost, accuracy = agg["cost"][key], agg["metrics"]["class_il"]["final_accuracy"]
        x, y = cost["mean"] / scale, accuracy["mean"]
        ax.errorbar(x, y, xerr=cost["std"] / scale, yerr=accuracy["std"], fmt="o", capsize=4,
                    color=colours[index % len(colours)], label=f"{label} ({_seed_count(agg)})")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
        points.append((x, y))
    front = pareto_front(points)
    ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="black",
            linestyle="--", linewidth=1.0, label="Pareto front")
    ax.margins(0.15)  # room for the labels
    return _finish(fig, ax, path, axis_label, "final class-IL accuracy (%)",
                   title or f"Accuracy against training cost, {_benchmark(docs)} (mean ± std over seeds)")


def _finish(fig: Figure, ax: plt.Axes, path: Path, xlabel: str, ylabel: str, title: str) -> Figure:
    """Label the axes, grid, legend outside on the right, title; save to ``path`` and return the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _anytime_curves(docs: Sequence[Document]) -> list[tuple[str, list[Document]]]:
    """The curves to draw and their labels: a group whose runs were evaluated at the same steps as
    one (their mean: ``lwf (mean of seeds 0, 1)``), otherwise each of its runs (``lwf (seed 1)``)."""
    groups = group_runs([doc for doc in docs if "anytime" in doc])
    curves = []
    for name, group in zip(config_labels([group[0]["config"] for group in groups]), groups):
        if len(group) > 1 and len({tuple(point["step"] for point in doc["anytime"]["points"]) for doc in group}) == 1:
            unfinished = sum(not is_complete(doc) for doc in group)
            note = f"; {unfinished} unfinished" if unfinished else ""
            curves.append((f"{name} (mean of seeds {', '.join(str(doc['config']['seed']) for doc in group)}{note})",
                           group))
        else:
            curves += [(f"{name} ({seeds_text(doc)})", [doc]) for doc in group]
    return curves


def plot_anytime(docs: Sequence[Document], path: Path, title: str | None = None) -> Figure:
    """The class-IL accuracy (%, mean over the tasks seen) at every anytime evaluation point against
    the optimiser step, one line per group of runs evaluated at the same steps (the mean over its
    seeds, with a band of ± the sample std for several seeds), else per run; the task boundaries
    (``cost_report.task_boundaries``) as dashed vertical lines: grey when all curves share them,
    else in each curve's colour."""
    curves = _anytime_curves(docs)
    if not curves:
        raise UsageError("no run has anytime evaluations: run with --eval-every N")
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    boundaries = []
    for label, runs in curves:
        steps = [point["step"] for point in runs[0]["anytime"]["points"]]
        mean, std = mean_and_std([[point["class_il"] for point in doc["anytime"]["points"]] for doc in runs])
        line = ax.plot(steps, mean, marker="o", markersize=3, linewidth=1.6, label=label)[0]
        if len(runs) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.18, linewidth=0)
        if "cost" in runs[0]:
            boundaries.append((line.get_color(), task_boundaries(runs[0])))
    shared = len({tuple(steps) for _, steps in boundaries}) == 1
    drawn: set[int] = set()
    for colour, steps in boundaries:
        for step in steps:
            if step not in drawn:
                ax.axvline(step, color="grey" if shared else colour, linestyle="--", linewidth=0.9, alpha=0.7)
                drawn.add(step)
    ax.set_ylim(0, 100)
    return _finish(fig, ax, path, "optimiser step", "class-IL accuracy on the tasks seen (%)",
                   title or f"Anytime accuracy, {_benchmark(docs)} (dashed: task boundaries)")
