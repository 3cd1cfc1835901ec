"""Classifier heads that grow as new classes arrive.

Labels are positions in the stream's class order, so the classes seen so far
are always ``0 .. n_seen - 1`` and a head only ever appends output units.

Each growth adds its own ``nn.Linear`` block and the blocks' outputs are
concatenated. One matrix product over a grown weight matrix would hold the
same old rows, yet its old logits would differ in the last bits (the GEMM
kernel blocks the work differently for another output size); separate
blocks keep every old logit bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn


class IncrementalClassifier(nn.Module):
    """One head over every class seen so far (class-IL), grown block by block.

    ``grow(n)`` appends a freshly initialised linear block for the classes
    ``num_classes .. n-1``; earlier blocks are untouched. New blocks are new
    parameters, created on the head's device (an empty buffer follows
    ``.to(device)`` even before the first block exists): build the optimizer
    after growing.
    """

    def __init__(self, in_features: int, num_classes: int = 0) -> None:
        super().__init__()
        self.in_features = in_features
        self.blocks = nn.ModuleList()
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)
        self.grow(num_classes)

    @property
    def num_classes(self) -> int:
        return sum(block.out_features for block in self.blocks)

    @property
    def weight(self) -> torch.Tensor:
        """All rows, (num_classes, in_features): a concatenated view for reading."""
        return torch.cat([block.weight for block in self.blocks]) if self.blocks else torch.empty(0, self.in_features)

    def grow(self, num_classes: int) -> None:
        """Extend the head to ``num_classes`` units; a no-op if it is that large."""
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        self.blocks.append(nn.Linear(self.in_features, extra, device=self.device_anchor.device))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.blocks:
            return features.new_zeros(features.shape[0], 0)
        return torch.cat([block(features) for block in self.blocks], dim=1)


class MultiHeadClassifier(IncrementalClassifier):
    """One linear head per task (task-IL), as in LwF's original setting.

    Block t is task t's head; ``forward`` returns the heads' outputs side by
    side in class order, so task t's prediction is the arg-max over its own
    slice. With the ``multi`` head kind, cross-entropy trains only the
    current task's head.
    """

    def __init__(self, in_features: int) -> None:
        super().__init__(in_features, 0)

    def task_head(self, task: int) -> nn.Linear:
        return self.blocks[task]


def scale_rows(head: IncrementalClassifier, start: int, stop: int, factor: torch.Tensor | float) -> None:
    """Multiply the weight and bias rows of classes [start, stop) by ``factor``, in place."""
    offset = 0
    for block in head.blocks:
        low, high = max(start - offset, 0), min(stop - offset, block.out_features)
        if low < high:
            block.weight[low:high] *= factor
            block.bias[low:high] *= factor
        offset += block.out_features
