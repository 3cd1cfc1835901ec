import math

import pytest

from lifelong_kd import metrics

# R[i, j]: accuracy on task j after training task i (percent).
R3 = [[90.0, 0.0, 0.0], [60.0, 80.0, 0.0], [40.0, 50.0, 70.0]]
# Task 0 improves after task 1 (70 > 50): forgetting uses the max, BWT does not.
R3_MAX = [[50.0, None, None], [70.0, 60.0, None], [65.0, 30.0, 90.0]]


def test_hand_computed_three_tasks():
    assert metrics.final_accuracy(R3) == pytest.approx((40 + 50 + 70) / 3)
    assert metrics.average_accuracy_curve(R3) == pytest.approx([90.0, 70.0, 160 / 3])
    assert metrics.average_incremental_accuracy(R3) == pytest.approx((90 + 70 + 160 / 3) / 3)
    assert metrics.forgetting(R3) == pytest.approx(((90 - 40) + (80 - 50)) / 2)
    assert metrics.bwt(R3) == pytest.approx(((40 - 90) + (50 - 80)) / 2)
    assert metrics.bwt(R3) == -40.0


def test_forgetting_takes_the_best_earlier_accuracy_and_bwt_can_differ():
    assert metrics.forgetting(R3_MAX) == pytest.approx(((70 - 65) + (60 - 30)) / 2)
    assert metrics.bwt(R3_MAX) == pytest.approx(((65 - 50) + (30 - 60)) / 2)
    assert metrics.bwt(R3_MAX) < 0
    assert metrics.final_accuracy(R3_MAX) == pytest.approx((65 + 30 + 90) / 3)


def test_single_task():
    r = [[75.0]]
    assert metrics.final_accuracy(r) == 75.0
    assert metrics.average_incremental_accuracy(r) == 75.0
    assert metrics.forgetting(r) == 0.0
    assert metrics.bwt(r) == 0.0
    assert metrics.fwt(r, [10.0]) == 0.0
    assert metrics.task_curves(r) == [[75.0]]


def test_partial_run_uses_the_completed_block():
    partial = [[90.0, 5.0, 7.0], [60.0, 80.0, 3.0]]
    assert metrics.final_accuracy(partial) == 70.0
    assert metrics.forgetting(partial) == 30.0
    assert metrics.bwt(partial) == -30.0


def test_fwt_against_baseline():
    full = [[90.0, 12.0, 8.0], [60.0, 80.0, 15.0], [40.0, 50.0, 70.0]]
    assert metrics.fwt(full, [10.0, 10.0, 10.0]) == pytest.approx(((12 - 10) + (15 - 10)) / 2)


def test_task_curves_and_summary():
    assert metrics.task_curves(R3) == [[90.0, 60.0, 40.0], [80.0, 50.0], [70.0]]
    summary = metrics.summary(R3)
    assert set(summary) == {"final_accuracy", "average_incremental_accuracy", "forgetting", "bwt"}
    assert all(math.isfinite(v) for v in summary.values())


def test_bad_matrix_shape():
    with pytest.raises(ValueError):
        metrics.final_accuracy([[1.0], [2.0]])


# A joint run's matrix: trained on tasks 0..k, its accuracy on task k after task k is 95, 90, 85.
JOINT = [[95.0, None, None], [93.0, 90.0, None], [91.0, 88.0, 85.0]]


def test_intransigence_is_the_reference_diagonal_minus_the_run_diagonal():
    mean, per_task = metrics.intransigence(R3, JOINT)  # R3's diagonal: 90, 80, 70
    assert per_task == pytest.approx([95 - 90, 90 - 80, 85 - 70]) and mean == pytest.approx(10.0)
    mean, per_task = metrics.intransigence(R3_MAX, JOINT)  # 50, 60, 90: better than the reference on task 2
    assert per_task == pytest.approx([45.0, 30.0, -5.0]) and mean == pytest.approx(70 / 3)


def test_intransigence_of_a_partial_run_and_a_short_reference():
    partial = [[90.0, 5.0, 7.0], [60.0, 80.0, 3.0]]
    assert metrics.intransigence(partial, JOINT) == (pytest.approx(7.5), pytest.approx([5.0, 10.0]))
    with pytest.raises(ValueError, match="reference run completed 2 tasks, fewer than the 3"):
        metrics.intransigence(R3, JOINT[:2])


def test_average_anytime_accuracy_is_the_mean_over_the_evaluation_points():
    points = [{"step": 10, "task": 0, "class_il": 60.0, "task_il": 60.0},
              {"step": 20, "task": 0, "class_il": 80.0, "task_il": 80.0},
              {"step": 30, "task": 1, "class_il": 45.0, "task_il": None},
              {"step": 40, "task": 1, "class_il": 55.0, "task_il": None}]
    assert metrics.average_anytime_accuracy(points) == pytest.approx((60 + 80 + 45 + 55) / 4)
    assert metrics.average_anytime_accuracy(points[:1]) == 60.0
    with pytest.raises(ValueError, match="at least one evaluation point"):
        metrics.average_anytime_accuracy([])
