import pytest

from lifelong_kd.plots import plot_forgetting_curves

MATRIX = [[90.0, 0.0, 0.0], [60.0, 80.0, 0.0], [40.0, 50.0, 70.0]]
TASK_IL = [[90.0, None, None], [85.0, 80.0, None], [75.0, 78.0, 70.0]]


def test_forgetting_curves_draw_the_matrix(tmp_path):
    doc = {"config": {"strategy": "lwf", "seed": 1, "benchmark": "tiny"},
           "matrices": {"class_il": MATRIX, "task_il": TASK_IL}}
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
