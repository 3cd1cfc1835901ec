"""Replay memory: a fixed budget of uint8 samples on the training device.

Storage (``ReplayBuffer``) is separate from the policies that decide what it
holds:

- ``reservoir``: Vitter's Algorithm R, online, each sample of the stream kept
  with probability M / seen (DER, Buzzega et al. 2020; ER, Chaudhry et al. 2019);
- ``class-balanced``: rebuilt at the end of each task with M // C samples per
  class seen (the first M % C classes get one more), old classes shrinking
  evenly as new ones arrive;
- ``herding``: as class-balanced, but new classes' samples are chosen by
  iCaRL's herding (Rebuffi et al. 2017) on L2-normalised features, in
  priority order, so shrinking keeps the best ones.

Design: ``lifelong_kd/DESIGN.md``, "The replay memory".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .faults import kill_point

POLICIES = ("reservoir", "class-balanced", "herding")


@dataclass
class ReplaySample:
    """Samples drawn from the buffer: images, labels and their slots in the buffer."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def rows(self, selected: slice | torch.Tensor) -> ReplaySample:
        """The samples at ``selected`` (one process's shard of a replay batch)."""
        return ReplaySample(self.x[selected], self.y[selected], self.index[selected])


class ReplayBuffer:
    """At most ``capacity`` samples: images (uint8 in our runner; any dtype, as first
    stored), labels, task ids and, optionally, the logits recorded at insertion
    (with how many units they cover)."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu", seed: int = 0) -> None:
        self.capacity = capacity
        self.device = torch.device(device)
        self.x: torch.Tensor | None = None
        self.y = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.task = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.logits: torch.Tensor | None = None
        self.logit_units = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.size = 0
        self.seen = 0
        self.rng = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """The bytes the memory holds: its images, labels, task ids and stored logits (with the units
        they cover), at full capacity."""
        tensors = (self.x, self.y, self.task) + (() if self.logits is None else (self.logits, self.logit_units))
        return sum(t.nbytes for t in tensors if t is not None)

    def _store(self, slots: torch.Tensor, x: torch.Tensor, y: torch.Tensor, task: int | torch.Tensor,
               logits: torch.Tensor | None) -> None:
        if self.x is None:
            self.x = torch.zeros((self.capacity, *x.shape[1:]), dtype=x.dtype, device=self.device)
        self.x[slots] = x
        self.y[slots] = y
        self.task[slots] = task
        if logits is not None:
            width = logits.shape[1]
            if self.logits is None or self.logits.shape[1] < width:
                grown = torch.zeros(self.capacity, width, device=self.device)
                if self.logits is not None:
                    grown[:, : self.logits.shape[1]] = self.logits
                self.logits = grown
            self.logits[slots, :width] = logits.float()
            self.logit_units[slots] = width

    def add_reservoir(self, x: torch.Tensor, y: torch.Tensor, task: int | torch.Tensor,
                      logits: torch.Tensor | None = None) -> None:
        """Offer a batch to the reservoir (Algorithm R); ``task`` is one id or one per sample.

        The k-th sample of the stream (0-based) fills slot k while the buffer
        is not full, then replaces a uniformly random slot with probability
        M / (k + 1). Decisions use a CPU generator and host-side counters, so
        there is no device sync; when two samples of a batch pick the same
        slot the later one wins, as if they had come one at a time.
        """
        count = len(y)
        ticket = self.seen + torch.arange(count)
        draw = (torch.rand(count, generator=self.rng, dtype=torch.float64) * (ticket + 1)).long()
        slots = torch.where(ticket < self.capacity, ticket, draw)
        keep = slots < self.capacity
        positions = torch.arange(count)[keep]
        slots = slots[keep]
        if len(slots):
            kill_point("memory")
            last = {int(s): i for i, s in enumerate(slots.tolist())}
            chosen = torch.tensor(sorted(last.values()), dtype=torch.long)
            positions, slots = _to_device(torch.stack([positions[chosen], slots[chosen]]), self.device)
            task = task[positions] if isinstance(task, torch.Tensor) else task
            self._store(slots, x[positions], y[positions], task, None if logits is None else logits[positions])
        self.seen += count
        self.size = min(self.seen, self.capacity)

    def replace(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor | int,
                logits: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Set the whole content (end-of-task policies); ``len(y) <= capacity``. ``logits``: the
        samples' stored logits and how many units each covers (else none are kept)."""
        if len(y) > self.capacity:
            raise ValueError(f"{len(y)} samples exceed the buffer's capacity {self.capacity}")
        self.size = self.seen = len(y)
        kill_point("memory")
        self.logits = None
        self.logit_units.zero_()
        slots = torch.arange(self.size, device=self.device)
        self._store(slots, x.to(self.device), y.to(self.device), 0, None)
        self.task[: self.size] = torch.as_tensor(task, device=self.device)
        if logits is not None:
            self.logits = torch.zeros(self.capacity, logits[0].shape[1], device=self.device)
            self.logits[: self.size] = logits[0].float()
            self.logit_units[: self.size] = logits[1]

    def clear(self) -> None:
        """Empty the memory (its generator goes on)."""
        self.size = self.seen = 0
        self.logits = None
        self.logit_units.zero_()

    def sample(self, count: int, generator: torch.Generator) -> ReplaySample | None:
        """Up to ``count`` distinct stored samples, uniformly; None when empty."""
        if self.size == 0:
            return None
        index = torch.randperm(self.size, generator=generator, device=generator.device)[:count].to(self.device)
        return ReplaySample(self.x[index], self.y[index], index)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, y, task) of the stored samples, in slot order."""
        if self.x is None:
            return torch.empty(0, dtype=torch.uint8, device=self.device), self.y[:0], self.task[:0]
        return self.x[: self.size], self.y[: self.size], self.task[: self.size]

    def class_counts(self) -> dict[int, int]:
        labels, counts = torch.unique(self.y[: self.size], return_counts=True)
        return dict(zip(labels.tolist(), counts.tolist()))

    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity, "size": self.size, "seen": self.seen, "x": self.x, "y": self.y,
            "task": self.task, "logits": self.logits, "logit_units": self.logit_units,
            "rng": self.rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"checkpoint buffer holds {state['capacity']} samples, this one {self.capacity}")
        for key in ("x", "y", "task", "logits", "logit_units"):
            value = state[key]
            setattr(self, key, None if value is None else value.to(self.device))
        self.size, self.seen = state["size"], state["seen"]
        self.rng.set_state(state["rng"])


def _to_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small CPU index tensor to ``device`` without blocking the host (pinned, async on CUDA)."""
    if device.type == "cuda":
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)


def balanced_quotas(classes: list[int], capacity: int) -> dict[int, int]:
    """M // C samples per class, the first M % C classes one more: counts differ by at most one."""
    base, extra = divmod(capacity, len(classes))
    return {c: base + (i < extra) for i, c in enumerate(sorted(classes))}


def herding_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """iCaRL's herding (Rebuffi et al. 2017, Alg. 4): indices of ``count`` samples
    whose running mean stays closest to the class mean, in selection order.

    On L2-normalised features f_i with mean mu, step k picks
    argmin_i || mu - (1/k) (f_i + sum_{j<k} f_pj) ||, never the same sample twice.
    """
    features = torch.nn.functional.normalize(features.float(), dim=1)
    mean = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mean)
    available = torch.ones(len(features), dtype=torch.bool, device=features.device)
    for k in range(1, min(count, len(features)) + 1):
        distance = (mean - (running + features) / k).norm(dim=1)
        distance[~available] = float("inf")
        pick = int(distance.argmin())
        chosen.append(pick)
        available[pick] = False
        running += features[pick]
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


def rebuild_balanced(
    buffer: ReplayBuffer,
    new_x: torch.Tensor,
    new_y: torch.Tensor,
    task: int,
    order_new: dict[int, torch.Tensor] | None = None,
) -> None:
    """End-of-task update for the class-balanced and herding policies.

    Old classes keep their first ``quota`` stored samples (priority order);
    each new class contributes its first ``quota`` samples in ``order_new[c]``
    (herding) or in a random order from the buffer's generator. Stored logits,
    where the buffer has them, stay with the old samples; the new ones get none
    (zero units) for the strategy to fill.
    """
    old_x, old_y, old_task = buffer.contents()
    new_classes = sorted(set(new_y.tolist()))
    quotas = balanced_quotas(sorted(set(old_y.tolist())) + new_classes, buffer.capacity)
    xs, ys, tasks, kept = [], [], [], []
    for c in sorted(set(old_y.tolist())):
        keep = torch.nonzero(old_y == c).flatten()[: quotas[c]]
        xs.append(old_x[keep])
        ys.append(old_y[keep])
        tasks.append(old_task[keep])
        kept.append(keep)
    for c in new_classes:
        members = torch.nonzero(new_y == c).flatten()
        if order_new is not None:
            ranked = members[order_new[c].to(members.device)]
        else:
            ranked = members[torch.randperm(len(members), generator=buffer.rng).to(members.device)]
        keep = ranked[: quotas[c]]
        xs.append(new_x[keep].to(buffer.device))
        ys.append(new_y[keep].to(buffer.device))
        tasks.append(torch.full((len(keep),), task, dtype=torch.long, device=buffer.device))
    logits = None
    if buffer.logits is not None:
        old_rows = torch.cat([torch.empty(0, dtype=torch.long, device=buffer.device), *kept])
        added = sum(len(y) for y in ys) - len(old_rows)
        logits = (torch.cat([buffer.logits[old_rows], buffer.logits.new_zeros(added, buffer.logits.shape[1])]),
                  torch.cat([buffer.logit_units[old_rows], buffer.logit_units.new_zeros(added)]))
    buffer.replace(torch.cat(xs), torch.cat(ys), torch.cat(tasks), logits)
