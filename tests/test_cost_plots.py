import json
from pathlib import Path

import numpy as np
import pytest
from fake_runs import ANYTIME, fake_cost_docs, fake_run, with_anytime, with_cost
from matplotlib.container import ErrorbarContainer

from lifelong_kd.cost_plots import plot_anytime, plot_cost
from lifelong_kd.cost_report import pareto_front
from lifelong_kd.errors import UsageError

# finetune (seeds 0, 1): 20 and 25 TFLOPs, 10 and 12 s, final class-IL accuracy 45 and 35;
# er M=200 (seed 3): 42 TFLOPs, 10 s, 65 % (fake_runs).
FINETUNE_FLOPS, FINETUNE_SECONDS, FINETUNE_ACCURACY = [20.0, 25.0], [10.0, 12.0], [45.0, 35.0]


def test_pareto_front_by_hand():
    points = [(1.0, 50.0), (2.0, 60.0), (3.0, 55.0), (2.0, 40.0), (4.0, 70.0), (1.0, 50.0)]
    # (3, 55) loses to (2, 60), (2, 40) to (1, 50); the two equal (1, 50) do not beat each other
    assert pareto_front(points) == [0, 5, 1, 4]
    assert pareto_front([(5.0, 10.0)]) == [0]
    assert pareto_front([(2.0, 70.0), (1.0, 70.0)]) == [1]  # same accuracy for less


def _points(ax) -> list[tuple[float, float, float, float]]:
    """(x, y, x half-width, y half-width) of each error bar of ``ax``."""
    found = []
    for container in ax.containers:
        assert isinstance(container, ErrorbarContainer)
        line, _, (xbars, ybars) = container.lines
        (x,), (y,) = line.get_xdata(), line.get_ydata()
        (xbar,), (ybar,) = xbars.get_segments(), ybars.get_segments()
        found.append((x, y, (xbar[1][0] - xbar[0][0]) / 2, (ybar[1][1] - ybar[0][1]) / 2))
    return found


@pytest.mark.parametrize("axis,finetune_cost,er_cost,front", [
    ("flops", FINETUNE_FLOPS, 42.0, [0, 1]),   # er costs more and is more accurate: both on the front
    ("seconds", FINETUNE_SECONDS, 10.0, [1]),  # er is faster (10 < 11 s) and more accurate: alone
])
def test_cost_plot_draws_the_results_numbers(axis, finetune_cost, er_cost, front, tmp_path):
    path = tmp_path / f"cost_{axis}.png"
    fig = plot_cost(fake_cost_docs(), path, axis)
    assert path.stat().st_size > 5_000
    (ax,) = fig.axes
    expected = [(np.mean(finetune_cost), np.mean(FINETUNE_ACCURACY), np.std(finetune_cost, ddof=1),
                 np.std(FINETUNE_ACCURACY, ddof=1)), (er_cost, 65.0, 0.0, 0.0)]
    assert _points(ax) == [pytest.approx(point) for point in expected]
    assert [text.get_text() for text in ax.texts] == ["finetune", "er M=200"]
    (step,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front"]
    assert list(step.get_xdata()) == pytest.approx([expected[i][0] for i in front])
    assert list(step.get_ydata()) == pytest.approx([expected[i][1] for i in front])
    assert ax.get_xlabel() == {"flops": "training compute (TFLOP)", "seconds": "training time (s)"}[axis]
    assert ax.get_ylabel() == "final class-IL accuracy (%)" and "tiny" in ax.get_title()


def test_anytime_plot_draws_the_points_and_the_task_boundaries(tmp_path):
    er = fake_cost_docs()[2]
    er = with_anytime(er, 5, [70.0, 65.0], [5, 5])  # 5 steps per task: boundaries at 5 and 10
    fig = plot_anytime([*fake_cost_docs()[:2], er], tmp_path / "anytime.svg")
    (ax,) = fig.axes
    curves = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert [line.get_label() for line in curves] == ["finetune (mean of seeds 0, 1)", "er M=200 (seed 3)"]
    assert list(curves[0].get_xdata()) == [5, 10, 15, 20]
    assert list(curves[0].get_ydata()) == pytest.approx(np.mean([ANYTIME[0], ANYTIME[1]], axis=0))
    assert list(curves[0].get_ydata()) == pytest.approx([55.0, 70.0, 30.0, 40.0])
    assert list(curves[1].get_xdata()) == [5, 10] and list(curves[1].get_ydata()) == [70.0, 65.0]
    (band,) = ax.collections  # the two finetune seeds' ± std; er has one seed
    assert band.get_paths()[0].vertices[:, 1].max() == pytest.approx(80.0 - 10.0 + np.sqrt(200))
    boundaries = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    # finetune's tasks end at steps 10, 20 and er's at 5, 10: each step once, in its curve's colour
    assert [line.get_xdata()[0] for line in boundaries] == [10, 20, 5]
    assert [line.get_color() for line in boundaries] == [curves[0].get_color()] * 2 + [curves[1].get_color()]
    assert ax.get_xlabel() == "optimiser step" and "(%)" in ax.get_ylabel()


def test_anytime_plot_with_shared_boundaries_and_runs_evaluated_at_other_steps(tmp_path):
    docs = fake_cost_docs()[:2]
    docs[1] = with_anytime(docs[1], 4, [50.0, 60.0, 30.0, 35.0, 40.0], [10, 10])  # other steps: one line per run
    fig = plot_anytime(docs, tmp_path / "anytime.png")
    (ax,) = fig.axes
    curves = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    assert [line.get_label() for line in curves] == ["finetune (seed 0)", "finetune (seed 1)"]
    assert list(curves[1].get_xdata()) == [4, 8, 12, 16, 20] and not ax.collections
    boundaries = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in boundaries] == [10, 20]
    assert {line.get_color() for line in boundaries} == {"grey"}


def test_make_plots_passes_cost_and_anytime_through(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "plots"))
    import make_plots

    runs = []
    for doc in fake_cost_docs():
        config = doc["config"]
        run = {"strategy": config["strategy"], "seed": config["seed"], "hparams": config["hparams"], "argv": ["run"],
               "matrices": doc["matrices"], "metrics": doc["metrics"], "cost": doc["cost"]}
        runs.append({**run, **({"anytime": doc["anytime"]} if "anytime" in doc else {})})
    (tmp_path / "budget.json").write_text(json.dumps({"protocol": {"epochs": 1}, "runs": runs}))
    monkeypatch.setattr(make_plots, "RESULTS", tmp_path)
    monkeypatch.setattr(make_plots, "HERE", tmp_path)
    docs = make_plots.benchmark_documents("budget.json")
    assert [doc["cost"] for doc in docs] == [doc["cost"] for doc in fake_cost_docs()]
    assert [doc.get("anytime") for doc in docs] == [doc.get("anytime") for doc in fake_cost_docs()]
    assert docs[0]["config"]["budget"] is None
    assert make_plots.cost_figures("budget.json") == [tmp_path / "budget_cost_flops.png",
                                                     tmp_path / "budget_cost_seconds.png"]  # er has no anytime
    assert all(path.stat().st_size > 5_000 for path in tmp_path.glob("*.png"))


def test_runs_without_cost_are_left_out_and_none_is_an_error(tmp_path):
    old = fake_run("lwf", 0, {"class_il": [[50.0, 0.0], [20.0, 60.0]]})
    fig = plot_cost([*fake_cost_docs(), old], tmp_path / "cost.png")
    assert len(fig.axes[0].containers) == 2
    with pytest.raises(UsageError, match="no run has a cost entry"):
        plot_cost([old], tmp_path / "none.png")
    with pytest.raises(UsageError, match="--eval-every"):
        plot_anytime([with_cost(old, [1, 1], 1.0, 0.0, 1.0)], tmp_path / "none.png")
