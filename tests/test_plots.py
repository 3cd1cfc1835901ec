import numpy as np
import pytest
from fake_runs import FINETUNE, fake_docs, fake_run
from matplotlib.container import BarContainer

from lifelong_kd import metrics
from lifelong_kd.plots import (
    plot_accuracy_matrices,
    plot_final_metrics,
    plot_forgetting_curves,
    plot_strategy_comparison,
)

MATRIX = [[90.0, 0.0, 0.0], [60.0, 80.0, 0.0], [40.0, 50.0, 70.0]]
TASK_IL = [[90.0, None, None], [85.0, 80.0, None], [75.0, 78.0, 70.0]]


def test_forgetting_curves_draw_the_matrix(tmp_path):
    doc = fake_run("lwf", 1, {"class_il": MATRIX, "task_il": TASK_IL})
    path = tmp_path / "curves.png"
    fig = plot_forgetting_curves([doc, doc], path)
    assert path.stat().st_size > 5_000
    axes = fig.axes
    assert len(axes) == 4  # 2 settings x 2 runs
    class_ax = axes[0]
    lines = class_ax.get_lines()
    assert len(lines) == 4  # one per task + the average
    assert list(lines[0].get_xdata()) == [1, 2, 3] and list(lines[0].get_ydata()) == [90.0, 60.0, 40.0]
    assert list(lines[2].get_ydata()) == [70.0]
    assert list(lines[3].get_ydata()) == pytest.approx([90.0, 70.0, 160 / 3])
    assert lines[3].get_linewidth() > lines[0].get_linewidth()
    assert class_ax.get_title() == "lwf (seed 1)"
    assert "(%)" in class_ax.get_ylabel() and "class-IL" in class_ax.get_ylabel()
    assert list(axes[2].get_lines()[1].get_ydata()) == [80.0, 78.0]


def test_accuracy_matrices_annotate_every_cell(tmp_path):
    doc = fake_run("lwf", 1, {"class_il": MATRIX, "task_il": TASK_IL})
    other = fake_run("er", 0, {"class_il": MATRIX, "task_il": TASK_IL}, hparams={"memory": 200})
    path = tmp_path / "matrices.svg"
    fig = plot_accuracy_matrices([doc, other], path)
    assert path.read_text().startswith("<?xml") and path.stat().st_size > 5_000
    class_ax, _, task_ax = fig.axes[:3]  # row class-IL: two runs, then task-IL; the colour bar last
    assert class_ax.get_title() == "lwf (seed 1)\nclass-IL" and fig.axes[1].get_title() == "er M=200 (seed 0)\nclass-IL"
    assert task_ax.get_title() == "lwf (seed 1)\ntask-IL"
    assert [t.get_text() for t in class_ax.texts] == [f"{v:.1f}" for row in MATRIX for v in row]
    assert [t.get_text() for t in task_ax.texts] == ["n/a" if v is None else f"{v:.1f}" for row in TASK_IL for v in row]
    assert [t.get_position() for t in task_ax.texts[:2]] == [(0, 0), (1, 0)]  # (column j, row i)
    image = task_ax.get_images()[0].get_array()
    assert list(image.mask[0]) == [False, True, True] and image[2, 1] == 78.0
    assert fig.axes[-1].get_ylabel() == "accuracy (%)"
    assert class_ax.get_ylabel() == "after training task" and task_ax.get_xlabel() == "task evaluated"


def test_strategy_comparison_draws_mean_and_std_band(tmp_path):
    path = tmp_path / "compare.pdf"
    fig = plot_strategy_comparison(fake_docs(), path)
    assert path.read_bytes().startswith(b"%PDF")
    class_ax, task_ax = fig.axes
    finetune, er = class_ax.get_lines()
    assert finetune.get_label() == "finetune (2 seeds)" and er.get_label() == "er M=200 (1 seed)"
    curves = np.array([metrics.average_accuracy_curve(m["class_il"]) for m in FINETUNE.values()])
    mean, std = curves.mean(axis=0), curves.std(axis=0, ddof=1)
    assert list(finetune.get_xdata()) == [1, 2] and finetune.get_ydata() == pytest.approx(mean)
    assert er.get_ydata() == pytest.approx([90.0, 65.0])
    (band,) = class_ax.collections  # one seed: no band
    vertices = band.get_paths()[0].vertices
    for x, low, high in zip([1, 2], mean - std, mean + std):
        at_x = vertices[vertices[:, 0] == x, 1]
        assert at_x.min() == pytest.approx(low) and at_x.max() == pytest.approx(high)
    assert [line.get_label() for line in task_ax.get_lines()] == ["finetune (2 seeds)"]  # er has no task-IL
    assert "(%)" in class_ax.get_ylabel() and class_ax.get_xlabel() == "tasks trained"
    assert fig.texts[0].get_text().startswith("Average accuracy")


def test_final_metrics_bars_are_means_with_std_error_bars(tmp_path):
    path = tmp_path / "bars.png"
    docs = [fake_run("finetune", seed, {"class_il": m["class_il"]}) for seed, m in FINETUNE.items()]
    docs += [fake_run("lwf", seed, {"class_il": [[70.0, 0.0], [10.0 * seed, 80.0]]}) for seed in (0, 1, 2)]
    fig = plot_final_metrics(docs, path, settings=["class_il"])
    assert path.stat().st_size > 5_000
    for ax, function in zip(fig.axes, [metrics.final_accuracy, metrics.forgetting]):
        finetune = [function(m["class_il"]) for m in FINETUNE.values()]
        lwf = [function([[70.0, 0.0], [10.0 * seed, 80.0]]) for seed in (0, 1, 2)]
        (bars,) = [container for container in ax.containers if isinstance(container, BarContainer)]
        assert [bar.get_height() for bar in bars] == pytest.approx([np.mean(finetune), np.mean(lwf)])
        segments = bars.errorbar.lines[2][0].get_segments()
        half_widths = [(segment[1][1] - segment[0][1]) / 2 for segment in segments]
        assert half_widths == pytest.approx([np.std(finetune, ddof=1), np.std(lwf, ddof=1)])
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["finetune\n(2 seeds)", "lwf\n(3 seeds)"]
    assert fig.axes[0].get_ylabel() == "final accuracy (%)" and "forgetting" in fig.axes[1].get_ylabel()


def test_unfinished_runs_have_their_status_in_the_labels(tmp_path):
    stopped = {"class_il": MATRIX[:2], "task_il": TASK_IL[:2]}
    failed = fake_run("lwf", 1, stopped, status="failed: loss is nan", n_tasks=3)
    fig = plot_forgetting_curves([failed], tmp_path / "curves.png")
    assert fig.axes[0].get_title() == "lwf (seed 1; failed 2/3)"
    running = [fake_run("lwf", seed, stopped, status="running", n_tasks=3) for seed in (0, 2)]
    fig = plot_strategy_comparison([*fake_docs(), *running], tmp_path / "compare.png")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["finetune (2 seeds)", "er M=200 (1 seed)", "lwf (2 seeds; 2 running (2/3))"]
