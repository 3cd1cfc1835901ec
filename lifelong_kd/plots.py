"""Figures from results documents (matplotlib, Agg backend: no display needed).

Every function takes results documents (``{"config", "matrices", "metrics"}``: a
run's results.json, or ``report.aggregate`` of several seeds), draws one figure,
saves it to ``path`` (the suffix picks the format) and returns it; ``title``
replaces the default title. A run or group that did not finish has its status in
its label (``report.status_note``): ``lwf (seed 1; failed 2/5)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import metrics  # noqa: E402
from .errors import UsageError  # noqa: E402
from .report import (  # noqa: E402
    SETTING_LABELS,
    Document,
    aggregate,
    group_runs,
    labelled_aggregates,
    run_labels,
    status_note,
)

FIGURE_KINDS = ("curves", "matrix", "compare", "cost", "anytime")
NEEDS_ENTRY = ("cost", "anytime")  # kinds that need every run to have the results entry of their name
FORMATS = ("png", "svg", "pdf")
NOT_AVAILABLE = "n/a"


def _save(fig: Figure, path: Path) -> Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _benchmark(docs: Sequence[Document]) -> str:
    return docs[0]["config"].get("benchmark", "")


def plot_forgetting_curves(
    docs: Sequence[Document], path: Path, settings: Sequence[str] = ("class_il", "task_il"),
    title: str | None = None,
) -> Figure:
    """A grid of panels, one row per setting and one column per run: accuracy on
    each task (one line per task) against the number of tasks trained, and the
    average accuracy over the tasks seen as a bold black line."""
    fig, axes = plt.subplots(
        len(settings), len(docs), figsize=(4.2 * len(docs) + 0.8, 3.4 * len(settings) + 0.4),
        sharex="col", sharey=True, squeeze=False,
    )
    for row, setting in enumerate(settings):
        for ax, doc, label in zip(axes[row], docs, run_labels(docs)):
            matrix = doc["matrices"][setting]
            trained = len(matrix)
            for j, curve in enumerate(metrics.task_curves(matrix)):
                ax.plot(range(j + 1, trained + 1), curve, marker="o", markersize=3, linewidth=1.2,
                        label=f"task {j + 1}")
            ax.plot(range(1, trained + 1), metrics.average_accuracy_curve(matrix),
                    color="black", linewidth=2.8, label="average")
            ax.set_xticks(range(1, trained + 1))
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(label)
            if row == len(settings) - 1:
                ax.set_xlabel("tasks trained")
        axes[row][0].set_ylabel(f"{SETTING_LABELS[setting]} accuracy (%)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.suptitle(title or f"Forgetting curves, {_benchmark(docs)}")
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_matrices(
    docs: Sequence[Document], path: Path, settings: Sequence[str] = ("class_il", "task_il"),
    title: str | None = None,
) -> Figure:
    """Heatmaps of the accuracy matrices R[i, j] (%), one row per setting and one column per
    run, each cell annotated with its value (one decimal); a cell without a value (a task not
    evaluated after that row's task: class-IL of a future task, task-IL where the head has no
    units or without ``--eval-future``) is grey and reads "n/a"."""
    n_tasks = max(len(doc["matrices"][setting][0]) for doc in docs for setting in settings)
    side = max(2.6, 0.55 * n_tasks + 0.9)
    fig, axes = plt.subplots(
        len(settings), len(docs), figsize=(side * len(docs) + 0.9, side * len(settings) + 0.9), squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")
    for row, setting in enumerate(settings):
        for ax, doc, label in zip(axes[row], docs, run_labels(docs)):
            values = np.array(doc["matrices"][setting], dtype=float)
            image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100)
            for (i, j), value in np.ndenumerate(values):
                text = NOT_AVAILABLE if np.isnan(value) else f"{value:.1f}"
                colour = "black" if np.isnan(value) or value > 60 else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
            ax.set_xticks(range(values.shape[1]), [str(j + 1) for j in range(values.shape[1])])
            ax.set_yticks(range(values.shape[0]), [str(i + 1) for i in range(values.shape[0])])
            ax.set_title(f"{label}\n{SETTING_LABELS[setting]}", fontsize=9)
        axes[row][0].set_ylabel("after training task")
    for ax in axes[-1]:
        ax.set_xlabel("task evaluated")
    fig.colorbar(image, ax=axes, shrink=0.8, label="accuracy (%)")
    fig.suptitle(title or f"Accuracy matrices, {_benchmark(docs)}")
    return _save(fig, path)


def _seed_count(agg: Document) -> str:
    return f"{len(agg['seeds'])} seed{'s' if len(agg['seeds']) > 1 else ''}{status_note(agg)}"


def _settings_of_any(docs: Sequence[Document], settings: Sequence[str]) -> list[str]:
    return [setting for setting in settings if any(setting in doc["matrices"] for doc in docs)]


def plot_strategy_comparison(
    docs: Sequence[Document], path: Path, settings: Sequence[str] = ("class_il", "task_il"),
    title: str | None = None,
) -> Figure:
    """Average accuracy A_i after each task i, one line per group of runs (``report.group_runs``:
    one strategy and config, several seeds) at the mean over seeds, with a band of mean ± sample
    std where the group has more than one seed; one panel per setting, showing the groups that have it."""
    labels, aggregates = labelled_aggregates(docs)
    settings = _settings_of_any(docs, settings)
    fig, axes = plt.subplots(1, len(settings), figsize=(5.2 * len(settings) + 1.6, 4.2), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for label, agg in zip(labels, aggregates):
            if setting not in agg["curves"]:
                continue
            mean, std = (np.array(agg["curves"][setting][key]) for key in ("mean", "std"))
            tasks = np.arange(1, len(mean) + 1)
            label_with_seeds = f"{label} ({_seed_count(agg)})"
            line = ax.plot(tasks, mean, marker="o", markersize=4, linewidth=1.8, label=label_with_seeds)[0]
            if len(agg["seeds"]) > 1:
                ax.fill_between(tasks, mean - std, mean + std, color=line.get_color(), alpha=0.18, linewidth=0)
            ax.set_xticks(tasks)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_xlabel("tasks trained")
        ax.set_ylabel(f"{SETTING_LABELS[setting]} average accuracy (%)")
        ax.set_title(SETTING_LABELS[setting])
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    fig.suptitle(title or f"Average accuracy on the tasks seen, {_benchmark(docs)} (mean ± std over seeds)")
    fig.tight_layout()
    return _save(fig, path)


FINAL_METRICS = {"final_accuracy": "final accuracy (%)", "forgetting": "forgetting (% points)"}


def plot_final_metrics(
    docs: Sequence[Document], path: Path, settings: Sequence[str] = ("class_il", "task_il"),
    title: str | None = None,
) -> Figure:
    """Bars of the final accuracy and the forgetting per group of runs (mean over seeds), one bar
    per setting the group has, with error bars of ± the sample std over seeds (``report.aggregate``)."""
    labels, aggregates = labelled_aggregates(docs)
    settings = _settings_of_any(docs, settings)
    positions = np.arange(len(aggregates))
    width = 0.8 / len(settings)
    fig, axes = plt.subplots(1, len(FINAL_METRICS), figsize=(max(4.0, 1.1 * len(aggregates) + 1.5) * 2, 4.4))
    for ax, (name, axis_label) in zip(axes, FINAL_METRICS.items()):
        for k, setting in enumerate(settings):
            having = [i for i, agg in enumerate(aggregates) if setting in agg["metrics"]]
            stats = [aggregates[i]["metrics"][setting][name] for i in having]
            ax.bar(positions[having] + (k - (len(settings) - 1) / 2) * width, [s["mean"] for s in stats], width,
                   yerr=[s["std"] for s in stats], capsize=4, label=SETTING_LABELS[setting])
        tick_labels = [f"{label}\n({_seed_count(agg)})" for label, agg in zip(labels, aggregates)]
        ax.set_xticks(positions, tick_labels, fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel(axis_label)
        ax.set_title(axis_label.split(" (")[0])
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(title or f"Final accuracy and forgetting, {_benchmark(docs)} (mean ± std over seeds)")
    fig.tight_layout()
    return _save(fig, path)


def write_figures(docs: Sequence[Document], out_dir: Path, kind: str = "all", fmt: str = "png") -> list[Path]:
    """Draw the figures of ``kind`` (one of ``FIGURE_KINDS`` or ``all``) into ``out_dir``.

    Forgetting curves and matrices get one column per group of runs: the run itself, or for
    a group of several seeds its aggregate (mean matrix), and a row per setting (class-IL,
    task-IL) all groups have. ``compare`` draws the strategy comparison and the final
    accuracy / forgetting bars; ``cost`` accuracy against training FLOPs and against training
    seconds, ``anytime`` the anytime accuracy curves (``cost_plots``). These two need every run
    to have its ``cost`` / ``anytime`` entry (a ``UsageError`` otherwise); ``all`` draws them
    only when every run has it, so results written before they existed still plot.
    """
    from .cost_plots import plot_anytime, plot_cost  # here: cost_plots imports this module

    panels = [group[0] if len(group) == 1 else aggregate(group) for group in group_runs(docs)]
    settings = [setting for setting in ("class_il", "task_il") if all(setting in doc["matrices"] for doc in panels)]
    having = {name: all(name in doc for doc in docs) for name in NEEDS_ENTRY}
    if kind in NEEDS_ENTRY and not having[kind]:
        missing = sum(kind not in doc for doc in docs)
        how = "run them with --eval-every N" if kind == "anytime" else "re-run them"
        raise UsageError(f"--kind {kind}: {missing} of the {len(docs)} runs have no '{kind}' entry "
                         f"(results written without it): {how}, or leave them out")
    kinds = [name for name in FIGURE_KINDS if having.get(name, True)] if kind == "all" else [kind]
    written = []
    if "curves" in kinds:
        written.append(out_dir / f"forgetting_curves.{fmt}")
        plot_forgetting_curves(panels, written[-1], settings)
    if "matrix" in kinds:
        written.append(out_dir / f"accuracy_matrices.{fmt}")
        plot_accuracy_matrices(panels, written[-1], settings)
    if "compare" in kinds:
        written.append(out_dir / f"strategy_comparison.{fmt}")
        plot_strategy_comparison(docs, written[-1])
        written.append(out_dir / f"final_accuracy_forgetting.{fmt}")
        plot_final_metrics(docs, written[-1])
    if "cost" in kinds:
        for axis in ("flops", "seconds"):
            written.append(out_dir / f"cost_{axis}.{fmt}")
            plot_cost(docs, written[-1], axis)
    if "anytime" in kinds:
        written.append(out_dir / f"anytime.{fmt}")
        plot_anytime(docs, written[-1])
    return written
