"""Checkpoints: written atomically, the last two kept, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain containers (dicts, lists, tuples, strings, numbers,
None), so the safe loader reads it without running code. ``OUT/checkpoint.pt`` is the newest;
the one before it is kept as ``OUT/checkpoint.prev.pt``, so a checkpoint damaged by a kill or a
full disk falls back to the previous good one. The one written where the last finished task
ended is also kept, as ``OUT/checkpoint.task.pt`` (a hard link where the disk allows): a run
that fails on a NaN goes back to it (``rewind_to_task_start``), to resume with a lower lr.

The random generators a run draws from (Python, numpy, torch's CPU and CUDA generators) are saved
and restored with ``random_state`` and ``restore_random_state``.

Design: ``lifelong_kd/DESIGN.md``, "Memory and teacher under resume".
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UsageError
from .faults import kill_point

FORMAT = "lifelong_kd.checkpoint/2"  # 2: the run record carries its cost and anytime points
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
TASK_START = "checkpoint.task.pt"


class CheckpointWarning(UserWarning):
    """The newest checkpoint could not be read; the run resumes from the previous one."""


@dataclass(frozen=True)
class CheckpointInterval:
    """How often a mid-task checkpoint is written: every ``steps`` SGD steps or ``seconds`` of training.

    Parsed from ``--checkpoint-every``: ``500`` (steps), ``10m`` (minutes) or ``0`` (end of tasks only).
    """

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> CheckpointInterval:
        text = str(text).strip()
        try:
            if text.endswith("m"):
                minutes = float(text[:-1])
                if minutes > 0 and math.isfinite(minutes):
                    return cls(seconds=60.0 * minutes)
            elif int(text) >= 0:
                return cls(steps=int(text) or None)
        except ValueError:
            pass
        raise UsageError(
            f"--checkpoint-every '{text}': give steps (500), minutes (10m) or 0 (only at the end of each task)"
        )

    def due(self, steps: int, seconds: float) -> bool:
        """Whether a checkpoint is due ``steps`` steps and ``seconds`` seconds after the last one."""
        return (self.steps is not None and steps >= self.steps) or (
            self.seconds is not None and seconds >= self.seconds
        )


def save_checkpoint(out_dir: Path, state: dict[str, Any], task_start: bool = False) -> None:
    """Write ``state`` to ``out_dir/checkpoint.pt`` atomically, keeping the former one as the previous.

    The bytes go to a temporary file in the same folder, are flushed to the disk (fsync), and
    only then renamed over the checkpoint, so a reader sees the old file or the new one, never
    a part. A kill between the two renames leaves the previous checkpoint, which loading takes.
    ``task_start``: the state is at the start of a task (no task trained, or one just finished),
    kept as ``checkpoint.task.pt`` too.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f".{CHECKPOINT}.*"):  # a write a kill cut short
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{CHECKPOINT}.", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            kill_point("checkpoint")
            handle.flush()
            os.fsync(handle.fileno())
        current = out_dir / CHECKPOINT
        if current.exists():
            os.replace(current, out_dir / PREVIOUS)
        os.replace(tmp, current)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if task_start:
        _replace_with_link(current, out_dir / TASK_START)
    _fsync_directory(out_dir)


def _replace_with_link(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to ``source`` (a copy where links are not allowed), atomically."""
    tmp = target.with_name(f".{target.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def rewind_to_task_start(out_dir: Path) -> None:
    """Make the checkpoint of the last task start (``checkpoint.task.pt``) the one to resume from;
    the newest becomes the previous. For a run that failed: it resumes from its last finished task."""
    start, current = out_dir / TASK_START, out_dir / CHECKPOINT
    if not start.is_file():
        return
    if current.exists() and not current.samefile(start):
        os.replace(current, out_dir / PREVIOUS)
    _replace_with_link(start, current)
    _fsync_directory(out_dir)


def _fsync_directory(folder: Path) -> None:
    """Make the renames durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(out_dir: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], list[str]]:
    """The newest readable checkpoint in ``out_dir`` and the warnings to show (one line each).

    The newest is tried first; if it is missing, truncated or corrupt, the previous one is used
    and a warning says so. Neither readable: a ``UsageError`` naming both.
    """
    problems: list[str] = []
    for name in (CHECKPOINT, PREVIOUS):
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path} is missing")
            continue
        try:
            with warnings.catch_warnings():  # torch's own warnings about a bad file; ours names it
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for a bad file
            first_line = (str(error).splitlines() or [""])[0][:120]
            problems.append(f"{path} is unreadable ({type(error).__name__}: {first_line})")
            continue
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            problems.append(f"{path} is not a lifelong-kd checkpoint of this version (format {FORMAT})")
            continue
        notes = [f"{problem}; resuming from {path}" for problem in problems]
        return state, notes
    raise UsageError(f"no checkpoint to resume from in '{out_dir}': {'; '.join(problems)}")


def random_state() -> dict[str, Any]:
    """The state of every global generator: Python's, numpy's, torch's CPU one and each CUDA device's."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_random_state(state: dict[str, Any]) -> None:
    """Put back what ``random_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
