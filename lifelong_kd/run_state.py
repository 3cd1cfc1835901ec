"""What a checkpoint of a run holds (``capture``) and how a run is put back where it was (``restore``).

A checkpoint is everything the rest of the run depends on, as tensors and plain containers: the
loop's position, the model and the teacher, the optimiser and schedule of the phase in progress
with its epoch's permutation, the strategy's state (``Strategy.state_dict``), every random
generator, the results so far and the resolved configuration. ``lifelong_kd.checkpoint`` writes
and reads the file.

Design: ``lifelong_kd/DESIGN.md``, "Memory and teacher under resume".
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch

from .checkpoint import FORMAT, random_state, restore_random_state
from .errors import UsageError
from .loop_state import Position
from .models import frozen_copy

if TYPE_CHECKING:
    from .runner import Runner

def capture(
    runner: Runner, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
    order: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The state of ``runner`` and, mid-phase, of its ``optimizer``, ``scheduler`` and epoch ``order``."""
    return {
        "format": FORMAT,
        "device": runner.device.type,
        "position": asdict(runner.position),
        "run_config": runner.run_config,
        "task_sizes": list(runner.task_sizes),
        "model": runner.model.state_dict(),
        "teacher": None if runner.teacher is None else runner.teacher.state_dict(),
        "teacher_size": None if runner.teacher is None else runner.teacher.num_classes,
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "order": None if order is None else order.cpu(),
        "strategy": runner.strategy.state_dict(),
        "random": random_state(),
        "generator": runner.generator.get_state(),
        "record": runner.record.state_dict(),
        "extra": runner.extra_state,
    }


def restore(runner: Runner, state: dict[str, Any]) -> None:
    """Put ``runner`` (freshly built with the run's settings) where ``capture`` left it. The optimiser,
    schedule and order are the runner's to take when it re-enters the phase (``phase_training``)."""
    if state["device"] != runner.device.type:  # its random generators' states are the device's
        raise UsageError(f"the checkpoint was written on {state['device']}, this run is on {runner.device.type}: "
                         f"resume it with --device {state['device']}")
    teacher_size = state["teacher_size"]
    for size in state["task_sizes"]:  # the head grows block by block, as it did
        if teacher_size is not None and runner.teacher is None and size > teacher_size:
            runner.teacher = frozen_copy(runner.model)
        runner.model.grow(size)
    if teacher_size is not None and runner.teacher is None:
        runner.teacher = frozen_copy(runner.model)
    if runner.teacher is not None:
        runner.teacher.load_state_dict(state["teacher"])
        runner.teacher_backbone = runner.compiled(runner.teacher.backbone)
    runner.task_sizes = list(state["task_sizes"])
    runner.model.load_state_dict(state["model"])
    runner.position = Position(**state["position"])
    unfinished = runner.position.task < len(runner.stream)  # a finished run changes nothing
    runner.run_config["changes"] = state["run_config"].get("changes", []) + (
        changes(state["run_config"], runner.run_config, runner.position.task) if unfinished else [])
    runner.record.load_state_dict(state["record"])
    index = min(runner.position.task, len(runner.stream) - 1)
    runner.strategy.load_state_dict(state["strategy"], runner.context(index))
    restore_random_state(state["random"])
    runner.generator.set_state(state["generator"])


def changes(before: dict[str, Any], after: dict[str, Any], task: int) -> list[dict[str, Any]]:
    """The loop and strategy settings that differ on resuming (a lower lr after a NaN): one entry each,
    ``{"from_task": 3, "setting": "lr", "was": 0.1, "now": 0.03}`` (tasks counted from 1)."""
    return [
        {"from_task": task + 1, "setting": key, "was": before[group].get(key), "now": value}
        for group in ("hparams", "train") for key, value in after[group].items()
        if before[group].get(key) != value
    ]
