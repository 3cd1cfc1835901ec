"""The training loop's settings (``TrainConfig``) and the small pieces of the loop: optimiser,
schedule, which batches take a step, seeding."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointInterval
from .distributed import Distributed
from .errors import UsageError
from .speed import EVAL_PRECISIONS, resolve_amp, resolve_compile


@dataclass(frozen=True)
class TrainConfig:
    """Options of the training loop shared by every strategy.

    ``amp`` (auto | bf16 | off) and ``compile`` (auto | on | off) are resolved
    by the runner (``lifelong_kd.speed``); ``channels_last`` applies to the
    convolutional backbones. ``eval_precision`` is ``fp32`` (the default:
    bf16 evaluation moved a final accuracy by 0.11 points, benchmarks/README.md
    "Evaluation precision"), ``bf16`` or ``train`` (the training
    precision); the head is float32 always.
    ``eval_future`` evaluates every future task too (task-IL, where the head
    has units for it). ``checkpoint_every`` is a number of steps (``500``) or
    of minutes of training (``10m``) between mid-task checkpoints (``0``: at
    the end of each task only), when the run has an output folder. ``sync_bn``: on many processes,
    BatchNorm normalises with the global batch's statistics (``lifelong_kd.sync_bn``).
    ``budget_flops`` / ``budget_steps``: each task's main phase trains until it has spent that many
    training FLOPs or optimiser steps, whatever the epochs (``lifelong_kd.cost``), at a constant lr.
    ``eval_every``: also evaluate the seen tasks every that many optimiser steps (anytime accuracy).
    """

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    eval_batch_size: int = 512
    device: str = "cpu"
    amp: str = "auto"
    channels_last: bool = True
    compile: str = "auto"
    eval_precision: str = "fp32"
    eval_future: bool = False
    seed: int = 0
    log_every: int = 25
    checkpoint_every: str = "10m"
    sync_bn: bool = True
    budget_flops: float | None = None
    budget_steps: int | None = None
    eval_every: int = 0

    @property
    def budget(self) -> tuple[str, float] | None:
        """(``"flops"`` | ``"steps"``, amount per task), or None."""
        if self.budget_flops is not None:
            return "flops", self.budget_flops
        return None if self.budget_steps is None else ("steps", self.budget_steps)

    def resolved(self, train_images: int) -> tuple[TrainConfig, dict[str, str]]:
        """This config with ``auto`` replaced by what the device does fast, and the reasons."""
        device = torch.device(self.device)
        amp, amp_reason = resolve_amp(self.amp, device)
        compile_, compile_reason = resolve_compile(self.compile, device, train_images)
        if self.eval_precision not in EVAL_PRECISIONS:
            raise UsageError(
                f"unknown --eval-precision '{self.eval_precision}': choose from {', '.join(EVAL_PRECISIONS)}"
            )
        eval_precision = amp if self.eval_precision == "train" else self.eval_precision
        eval_precision = "fp32" if eval_precision == "off" else eval_precision
        CheckpointInterval.parse(self.checkpoint_every)
        if self.budget_flops is not None and self.budget_steps is not None:
            raise UsageError("give one budget per task: --budget-flops or --budget-steps, not both")
        if self.budget is not None and not (math.isfinite(self.budget[1]) and self.budget[1] > 0):
            raise UsageError(f"a budget must be a positive finite number, not {self.budget[1]}")
        if self.budget is not None and self.schedule != "none":
            raise UsageError(f"a budgeted run trains until its budget is spent, so its epochs are not known ahead: "
                             f"it needs --schedule none, not {self.schedule}")
        config = replace(self, amp=amp, compile="on" if compile_ else "off", eval_precision=eval_precision)
        reasons = {
            "amp": f"{self.amp} -> {amp} ({amp_reason})",
            "compile": f"{self.compile} -> {config.compile} ({compile_reason})",
            "eval_precision": f"{self.eval_precision} -> {eval_precision} backbone, float32 head",
        }
        return config, reasons


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def too_small_to_step(size: int, batch_size: int, first: bool, processes: int = 1) -> bool:
    """Whether the loop skips a batch of ``size`` samples: one sample (BatchNorm cannot train on it),
    fewer than the ``processes`` it is split across (one would have none), or an epoch's final
    batch of fewer than ``batch_size / 2`` (``first``: the epoch has no other).

    A tiny final batch made the last SGD step of a task one on, say, 4 samples: BatchNorm's
    statistics from 4 samples and a gradient several times as noisy, at the full learning rate,
    decide the weights the task ends with. iCaRL at M = 500 (10,500 images a task, 10,500 % 32 = 4)
    lost current-task accuracy to that one step (benchmarks/README.md, "iCaRL at M = 500").
    The skipped samples are drawn again, at other positions, in the next epoch's permutation.
    """
    return size < max(2, processes) or (not first and size < batch_size / 2)


def make_optimizer(
    params: list[torch.nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epochs: int) -> Any:
    """Per-epoch schedule: constant, cosine to zero over the task, or x0.1 at each milestone."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=0.1)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops."""


LOWER_LR = "the finished tasks' results and checkpoint are kept; resume with a lower --lr, or --amp off"


def show_mean_loss(bar: tqdm, running: torch.Tensor, steps: int, task_index: int, epoch: int,
                   dist: Distributed) -> float:
    """Show and return the mean of the last ``steps`` losses (summed in ``running``; one host sync), or raise
    ``NonFiniteLossError`` when it is NaN or infinite (on many processes: on any of them, so all stop)."""
    mean = running.item() / steps
    if dist.any(not np.isfinite(mean), running.device):
        raise NonFiniteLossError(f"the loss became {mean} in task {task_index + 1}, epoch {epoch + 1}: " + LOWER_LR)
    bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
    return mean
