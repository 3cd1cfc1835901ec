"""TensorBoardLog writes the expected scalars, read back from the event file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lifelong_kd.errors import UsageError
from lifelong_kd.tensorboard_log import TensorBoardLog


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under ``log_dir`` with its (step, value) events."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_scalars_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    log_dir = tmp_path / "tb"
    with TensorBoardLog(log_dir) as log:
        log.training(step=10, loss=2.5, lr=0.1, images_per_second=1234.5)
        log.training(step=20, loss=1.25, lr=0.05, images_per_second=1500.0)
        log.task_end(
            task=0,
            step=20,
            rows={"class_il": [0.9], "task_il": [0.95]},
            metrics={"class_il": {"average_accuracy": 0.9, "forgetting": None}},  # type: ignore[dict-item]
        )
        log.training(step=30, loss=0.75, lr=0.01, images_per_second=1600.0)
        log.task_end(
            task=1,
            step=30,
            rows={"class_il": [0.6, 0.8], "nme_class_il": [None, 0.7]},
            metrics={"class_il": {"average_accuracy": 0.7, "forgetting": 0.3}, "task_il": {"bwt": -0.1}},
        )
    assert log_dir.is_dir()
    scalars = read_scalars(log_dir)
    expected = {
        "train/loss": [(10, 2.5), (20, 1.25), (30, 0.75)],
        "train/lr": [(10, 0.1), (20, 0.05), (30, 0.01)],
        "train/images_per_second": [(10, 1234.5), (20, 1500.0), (30, 1600.0)],
        "task/index": [(20, 0.0), (30, 1.0)],
        "class_il/task_0": [(20, 0.9), (30, 0.6)],
        "class_il/task_1": [(30, 0.8)],
        "task_il/task_0": [(20, 0.95)],
        "nme_class_il/task_1": [(30, 0.7)],
        "metrics/class_il/average_accuracy": [(20, 0.9), (30, 0.7)],
        "metrics/class_il/forgetting": [(30, 0.3)],
        "metrics/task_il/bwt": [(30, -0.1)],
    }
    assert set(scalars) == set(expected)  # no nme_class_il/task_0: the None entry wrote nothing
    for tag, events in expected.items():
        assert [step for step, _ in scalars[tag]] == [step for step, _ in events], tag
        assert [value for _, value in scalars[tag]] == pytest.approx([value for _, value in events]), tag


def test_flush_makes_events_readable_before_close(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    log = TensorBoardLog(tmp_path)
    try:
        log.training(step=1, loss=3.0, lr=0.2, images_per_second=10.0)
        log.flush()
        assert read_scalars(tmp_path)["train/loss"] == [(1, pytest.approx(3.0))]
    finally:
        log.close()


def test_missing_tensorboard_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UsageError, match=r"pip install 'lifelong_kd\[tensorboard\]'"):
        TensorBoardLog(tmp_path / "tb")
    assert not (tmp_path / "tb").exists()
