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
