"""What a run spends: images, teacher forwards, FLOPs, seconds and memory, per task (``results.json``'s ``cost``).

Papers compare continual-learning methods at equal epochs, not at equal cost (Prabhu et al.,
Computationally Budgeted Continual Learning, CVPR 2023). A replay step trains on twice the images
of a plain one, DER++'s on three times, and a distillation step adds a teacher forward; this
module counts all of it, so results can be compared per unit of compute (``--budget-flops``,
``plot --kind cost``).

FLOPs are counted, not estimated: the first training step of each *kind* (phase, current and
replayed batch sizes, head units, with or without a teacher) runs under ``torch.utils.flop_counter.FlopCounterMode``,
forward, backward and the strategy's extra forwards (the teacher's) together, and every later step
of that kind adds the same count; so do the images it forwarded through the teacher. The work
before and after a task's training (herding, class means, BiC's bias fit, X-DER's logit updates,
LUCIR's imprinting) is counted whole under the same counter. On many processes each counts its
shard and the counts are summed: the steps' sum is one process's count; task-end work that every
process repeats on gathered rows (a head over gathered features, BiC's fit) counts once per process.
FLOPs follow the counter's convention: a multiply-add is 2 FLOPs.

Design: ``lifelong_kd/DESIGN.md``, "Cost metering".
"""

from __future__ import annotations

import resource
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .distributed import Distributed

COUNTED_KEYS = ("current_images", "replayed_images", "teacher_images", "steps", "train_flops", "main_steps",
                "main_flops", "task_end_flops")
SECONDS_KEYS = ("train_seconds", "eval_seconds")  # the run record's ``timing``, per task


def step_kind(phase: str, current: int, replayed: int, units: int, teacher: bool) -> str:
    """The name of a step's kind: the phase, the current and replayed images, the head's units and whether
    there is a teacher. Steps of one kind cost the same FLOPs."""
    return f"{phase}/{current}+{replayed}/{units} units" + ("/teacher" if teacher else "")


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, source): CUDA's peak allocated memory since ``reset_peak_memory``, or the process's peak
    resident set size (Linux's ``ru_maxrss``, in KiB) on CPU, which cannot be reset."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS (getrusage ru_maxrss)"


@contextmanager
def flop_counter() -> Iterator[FlopCounterMode]:
    """``FlopCounterMode`` without its display, and without the warning torch.compile gives about the
    module hooks it sets (they track which module ran, for its table; the count does not use them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `torch.compile\\(module\\)` when there are global hooks")
        with FlopCounterMode(display=False) as counter:
            yield counter


def reset_peak_memory(device: torch.device) -> None:
    """Start CUDA's peak-memory count afresh (the CPU's process peak cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


class CostMeter:
    """The cost of a run as it accumulates, task by task; its ``state_dict`` goes into every checkpoint.

    ``main_steps`` and ``main_flops`` are the main phase's share of ``steps`` and ``train_flops``: what a
    budget limits (the other phases, LwF's warm-up, LUCIR's fine-tuning, run as configured and count in
    the totals). ``flops_per_step`` and ``teacher_per_step`` map a step kind (``step_kind``) to the FLOPs and the
    teacher's images counted on its first step. ``task`` holds the counts of the task in progress
    (``COUNTED_KEYS``); ``end_task`` closes it. The seconds are the run record's ``timing``, which
    ``document`` reads. ``budget`` is ``None`` or (``"flops"`` | ``"steps"``,
    amount per task). ``teacher_forwarded`` counts the images this process forwarded through the
    teacher (``TaskContext.teacher_outputs``); the meter reads it around the work it counts.
    """

    def __init__(self, budget: tuple[str, float] | None = None) -> None:
        self.budget = budget
        self.flops_per_step: dict[str, int] = {}
        self.teacher_per_step: dict[str, int] = {}
        self.per_task: list[dict[str, Any]] = []
        self.task: dict[str, Any] = dict.fromkeys(COUNTED_KEYS, 0)
        self.memory_source = ""
        self.teacher_forwarded = 0
        self.in_task = False  # between start_task and end_task

    def start_task(self, device: torch.device) -> None:
        """Open the next task's record (and, on CUDA, its peak memory)."""
        self.task = dict.fromkeys(COUNTED_KEYS, 0)
        self.in_task = True
        reset_peak_memory(device)

    def _counted(self, counter: FlopCounterMode, teacher_before: int, dist: Distributed,
                 device: torch.device) -> tuple[int, int]:
        """The FLOPs and teacher images counted since ``teacher_before``, summed over the processes."""
        counts = torch.tensor([counter.get_total_flops(), self.teacher_forwarded - teacher_before],
                              dtype=torch.float64, device=device)
        flops, teacher = dist.sum(counts).tolist()
        return int(flops), int(teacher)

    @contextmanager
    def counting_step(self, kind: str, current: int, replayed: int, main: bool, dist: Distributed,
                      device: torch.device) -> Iterator[None]:
        """Around one training step (of the main phase or not): count its FLOPs if it is the first of its
        kind, then add its cost."""
        if kind in self.flops_per_step:
            yield
        else:
            teacher_before = self.teacher_forwarded
            with flop_counter() as counter:
                yield
            self.flops_per_step[kind], self.teacher_per_step[kind] = self._counted(counter, teacher_before, dist,
                                                                                  device)
        self.task["steps"] += 1
        self.task["current_images"] += current
        self.task["replayed_images"] += replayed
        self.task["train_flops"] += self.flops_per_step[kind]
        self.task["teacher_images"] += self.teacher_per_step[kind]
        if main:
            self.task["main_steps"] += 1
            self.task["main_flops"] += self.flops_per_step[kind]

    @contextmanager
    def counting_task_work(self, dist: Distributed, device: torch.device) -> Iterator[None]:
        """Around a strategy's ``before_task`` or ``after_task`` work: add its FLOPs (and teacher images)."""
        teacher_before = self.teacher_forwarded
        with flop_counter() as counter:
            yield
        flops, teacher = self._counted(counter, teacher_before, dist, device)
        self.task["task_end_flops"] += flops
        self.task["teacher_images"] += teacher

    @property
    def run_steps(self) -> int:
        """The optimiser steps of the run so far, the task in progress's included."""
        return sum(task["steps"] for task in self.per_task) + (self.task["steps"] if self.in_task else 0)

    def budget_spent(self) -> bool:
        """Whether the main phase of the task in progress has spent its budget (never, without one)."""
        if self.budget is None:
            return False
        kind, amount = self.budget
        return self.task["main_flops" if kind == "flops" else "main_steps"] >= amount

    def end_task(self, memory_bytes: int, device: torch.device) -> None:
        """Close the task's record with the memory's size and the peak memory (this process's)."""
        peak, self.memory_source = peak_memory(device)
        self.in_task = False
        self.per_task.append({**self.task, "peak_memory_bytes": peak, "memory_bytes": memory_bytes})

    def document(self, timing: dict[str, list[float]]) -> dict[str, Any]:
        """``results.json``'s ``cost``: per task (its counts, its ``timing`` seconds, its peak memory and
        memory size), the total, the source of the peak memory, the counted step kinds and the budget."""
        per_task = [{**{key: task[key] for key in COUNTED_KEYS},
                     **{key: timing[key][index] for key in SECONDS_KEYS},
                     "peak_memory_bytes": task["peak_memory_bytes"], "memory_bytes": task["memory_bytes"]}
                    for index, task in enumerate(self.per_task)]
        total: dict[str, Any] = {key: sum(task[key] for task in per_task) for key in COUNTED_KEYS + SECONDS_KEYS}
        total["peak_memory_bytes"] = max((task["peak_memory_bytes"] for task in per_task), default=0)
        total["memory_bytes"] = per_task[-1]["memory_bytes"] if per_task else 0
        budget = None if self.budget is None else {"kind": self.budget[0], "per_task": self.budget[1]}
        return {"per_task": per_task, "total": total, "peak_memory_source": self.memory_source,
                "flops_per_step": dict(self.flops_per_step), "budget": budget}

    def state_dict(self) -> dict[str, Any]:
        """The meter as plain containers, for a checkpoint."""
        return {"flops_per_step": dict(self.flops_per_step), "teacher_per_step": dict(self.teacher_per_step),
                "per_task": list(self.per_task), "task": dict(self.task), "memory_source": self.memory_source,
                "in_task": self.in_task}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put the meter where ``state_dict`` left it."""
        self.flops_per_step, self.teacher_per_step = dict(state["flops_per_step"]), dict(state["teacher_per_step"])
        self.per_task, self.task = list(state["per_task"]), dict(state["task"])
        self.memory_source, self.in_task = state["memory_source"], state["in_task"]
