"""Figures from results documents (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import metrics  # noqa: E402

SETTING_LABELS = {"class_il": "class-IL", "task_il": "task-IL"}


def _run_label(doc: dict[str, Any]) -> str:
    config = doc["config"]
    return f"{config.get('strategy', '?')} (seed {config.get('seed', '?')})"


def plot_forgetting_curves(
    docs: Sequence[dict[str, Any]], path: Path, settings: Sequence[str] = ("class_il", "task_il")
) -> Figure:
    """A grid of panels, one row per setting and one column per run: accuracy on
    each task (one line per task) against the number of tasks trained, and the
    average accuracy over the tasks seen as a bold black line. Saves to
    ``path`` and returns the figure."""
    fig, axes = plt.subplots(
        len(settings), len(docs), figsize=(4.2 * len(docs) + 0.8, 3.4 * len(settings) + 0.4),
        sharex="col", sharey=True, squeeze=False,
    )
    for row, setting in enumerate(settings):
        for ax, doc in zip(axes[row], docs):
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
                ax.set_title(_run_label(doc))
            if row == len(settings) - 1:
                ax.set_xlabel("tasks trained")
        axes[row][0].set_ylabel(f"{SETTING_LABELS[setting]} accuracy (%)")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    benchmark = docs[0]["config"].get("benchmark", "")
    fig.suptitle(f"Forgetting curves, {benchmark}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
