"""Classifier heads that grow as new classes arrive: types with behaviour.

Labels are positions in the stream's class order, so the classes seen so far
are always ``0 .. n_seen - 1`` and a head only ever appends output units.
What differs between layouts is a head's own behaviour, not a string the
strategies compare: which units cross-entropy trains (``trained_logits``),
which units share a softmax in distillation (``distillation_groups``),
whether it has units for classes not seen yet (``future_units``), and how it
computes a logit (linear or cosine).

Each growth adds its own block and the blocks' outputs are concatenated. One
matrix product over a grown weight matrix would hold the same old rows, yet
its old logits would differ in the last bits (the GEMM kernel blocks the
work differently for another output size); separate blocks keep every old
logit bit-identical.

Design: ``lifelong_kd/DESIGN.md``, "A method is one file".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class IncrementalClassifier(nn.Module):
    """One linear head over every class seen so far (class-IL), grown block by block.

    ``grow(n)`` appends a freshly initialised linear block for the classes
    ``num_classes .. n-1``; earlier blocks are untouched. New blocks are new
    parameters, created on the head's device (an empty buffer follows
    ``.to(device)`` even before the first block exists): build the optimizer
    after growing.
    """

    kind: ClassVar[str] = "incremental"
    help: ClassVar[str] = "one head over all classes seen so far, grown each task (class-IL)"
    future_units: ClassVar[bool] = False  # units for classes not seen yet (evaluated on the next task)
    aligns_by_rows: ClassVar[bool] = True  # scaling a class's rows scales its logit (weight aligning)

    def __init__(self, in_features: int, num_classes: int = 0) -> None:
        super().__init__()
        self.in_features = in_features
        self.blocks = nn.ModuleList()
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)
        self.grow(num_classes)

    @classmethod
    def build(cls, in_features: int, stream_classes: int) -> IncrementalClassifier:
        """The head of this layout for a stream of ``stream_classes`` classes, before the first task."""
        return cls(in_features)

    @property
    def num_classes(self) -> int:
        return sum(block.out_features for block in self.blocks)

    @property
    def weight(self) -> torch.Tensor:
        """All rows, (num_classes, in_features): a concatenated copy, for reading."""
        return torch.cat([block.weight for block in self.blocks]) if self.blocks else torch.empty(0, self.in_features)

    def grow(self, num_classes: int) -> None:
        """Extend the head to ``num_classes`` units; a no-op if it is that large."""
        extra = num_classes - self.num_classes
        if extra <= 0:
            return
        self.blocks.append(self.new_block(extra))

    def new_block(self, rows: int) -> nn.Module:
        return nn.Linear(self.in_features, rows, device=self.device_anchor.device)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.blocks:
            return features.new_zeros(features.shape[0], 0)
        return torch.cat([block(features) for block in self.blocks], dim=1)

    def trained_logits(self, logits: torch.Tensor, y: torch.Tensor, n_seen: int,
                       task_of_class: Sequence[int]) -> torch.Tensor:
        """The logits cross-entropy compares label ``y`` against: here the seen classes' units."""
        return logits[:, :n_seen]

    def distillation_groups(self, n_old: int, task_of_class: Sequence[int]) -> list[slice]:
        """The old units a softmax distillation compares, one slice per softmax: here all of them in one."""
        return [slice(0, n_old)]

    def scale_rows(self, start: int, stop: int, factor: torch.Tensor | float) -> None:
        """Multiply the weight and bias rows of classes [start, stop) by ``factor``, in place: their
        logits become exactly ``factor`` times what they were."""
        offset = 0
        with torch.no_grad():
            for block in self.blocks:
                low, high = max(start - offset, 0), min(stop - offset, block.out_features)
                if low < high:
                    block.weight[low:high] *= factor
                    block.bias[low:high] *= factor
                offset += block.out_features


class FixedClassifier(IncrementalClassifier):
    """One linear head over every class of the stream from the start (Mammoth's layout).

    Cross-entropy trains all its units, as Mammoth does: the units of classes
    not seen yet are pushed down too.
    """

    kind = "fixed"
    help = "one head over every class of the stream from the start (Mammoth's layout)"
    future_units = True

    @classmethod
    def build(cls, in_features: int, stream_classes: int) -> IncrementalClassifier:
        return cls(in_features, stream_classes)

    def trained_logits(self, logits: torch.Tensor, y: torch.Tensor, n_seen: int,
                       task_of_class: Sequence[int]) -> torch.Tensor:
        return logits


class MultiHeadClassifier(IncrementalClassifier):
    """One linear head per task (task-IL), as in LwF's original setting.

    Block t is task t's head; ``forward`` returns the heads' outputs side by
    side in class order, so task t's prediction is the arg-max over its own
    slice. Cross-entropy classifies each sample among its own task's units,
    and distillation takes one softmax per old head (Li & Hoiem 2017, Eq. 2).
    """

    kind = "multi"
    help = "one head per task; training restricts cross-entropy to the current task's head (task-IL)"

    def trained_logits(self, logits: torch.Tensor, y: torch.Tensor, n_seen: int,
                       task_of_class: Sequence[int]) -> torch.Tensor:
        """The seen units, with every unit outside the sample's own task at -inf."""
        logits = logits[:, :n_seen]
        unit_task = unit_tasks(tuple(task_of_class[:n_seen]), logits.device)
        return logits.masked_fill(unit_task.unsqueeze(0) != unit_task[y].unsqueeze(1), float("-inf"))

    def distillation_groups(self, n_old: int, task_of_class: Sequence[int]) -> list[slice]:
        """One slice per old task's head."""
        groups, start = [], 0
        for unit in range(1, n_old + 1):
            if unit == n_old or task_of_class[unit] != task_of_class[start]:
                groups.append(slice(start, unit))
                start = unit
        return groups


class CosineClassifier(IncrementalClassifier):
    """A cosine-normalised head with a learnable scale (Hou et al., LUCIR, CVPR 2019, Eq. 4):

        logit_k = sigma * <w_k / ||w_k||, f / ||f||>

    ``sigma`` starts at 1 (LUCIR's code) and is shared by all classes. Blocks
    hold weight rows only (no bias). ``cosines`` gives the scores without the
    scale, for LUCIR's margin-ranking loss. ``imprint`` sets new rows from
    normalised class-mean features (LUCIR, Sec. 3.2 "imprinted weights").
    """

    kind = "cosine"
    aligns_by_rows = False
    help = "cosine-normalised head with a learnable scale sigma, grown each task (LUCIR)"

    def __init__(self, in_features: int, num_classes: int = 0) -> None:
        super().__init__(in_features, 0)
        self.sigma = nn.Parameter(torch.ones(()))
        self.grow(num_classes)

    def new_block(self, rows: int) -> nn.Module:
        block = nn.Linear(self.in_features, rows, bias=False, device=self.device_anchor.device)
        bound = 1.0 / self.in_features**0.5  # LUCIR's CosineLinear: uniform(-1/sqrt(d), 1/sqrt(d))
        nn.init.uniform_(block.weight, -bound, bound)
        return block

    def cosines(self, features: torch.Tensor) -> torch.Tensor:
        """cos(w_k, f) for every unit k, (batch, num_classes)."""
        unit = F.normalize(features, dim=1)
        if not self.blocks:
            return features.new_zeros(features.shape[0], 0)
        return torch.cat([F.linear(unit, F.normalize(block.weight, dim=1)) for block in self.blocks], dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.sigma * self.cosines(features)

    def scale_rows(self, start: int, stop: int, factor: torch.Tensor | float) -> None:
        raise TypeError("a cosine head's logits do not scale with its rows' norms: weight aligning does not apply")

    @torch.no_grad()
    def imprint(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The last block's rows from the normalised mean of the normalised ``features`` of each of its
        classes (``labels``: class positions), scaled to the older rows' mean norm as in LUCIR's code."""
        block = self.blocks[-1]
        first = self.num_classes - block.out_features
        old_norm = self.weight[:first].norm(dim=1).mean() if first else block.weight.norm(dim=1).mean()
        unit = F.normalize(features.float(), dim=1)
        for row in range(block.out_features):
            block.weight[row] = F.normalize(unit[labels == first + row].mean(dim=0), dim=0) * old_norm



class LocalSimilarityClassifier(IncrementalClassifier):
    """PODNet's local-similarity classifier (Douillard et al., ECCV 2020, Eq. 8): K proxies per class,

        s_{c,k} = -|| theta_{c,k} / ||theta_{c,k}|| - h / ||h|| ||^2 = 2 cos(theta_{c,k}, h) - 2,
        logit_c = eta * sum_k softmax_k(s_{c,.}) s_{c,k}

    the similarity of the authors' code (``neg_stable_cosine_distance``; the paper writes a cosine),
    with eta a learnt scale starting at 1 (``learned_scaling``). Each growth adds a block of
    ``proxies`` rows per class; ``imprint`` sets them from k-means centres of the class's normalised
    features (PODNet's multi-centre imprinting). Blocks hold weight rows only (no bias).
    """

    kind = "local-similarity"
    aligns_by_rows = False
    help = "PODNet's local-similarity classifier: several cosine proxies per class, a learnt scale"
    proxies: ClassVar[int] = 10  # PODNet's CIFAR-100 setting

    def __init__(self, in_features: int, num_classes: int = 0) -> None:
        super().__init__(in_features, 0)
        self.scale = nn.Parameter(torch.ones(()))
        self.grow(num_classes)

    @property
    def num_classes(self) -> int:
        return sum(block.out_features for block in self.blocks) // self.proxies

    def new_block(self, rows: int) -> nn.Module:
        block = nn.Linear(self.in_features, rows * self.proxies, bias=False, device=self.device_anchor.device)
        nn.init.kaiming_normal_(block.weight, nonlinearity="linear")  # PODNet's init of the proxies
        return block

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """sum_k softmax_k(s_{c,.}) s_{c,k} with s = 2 cos - 2, before the scale: (batch, num_classes)."""
        if not self.blocks:
            return features.new_zeros(features.shape[0], 0)
        unit = F.normalize(features, dim=1)
        cosines = torch.cat([F.linear(unit, F.normalize(block.weight, dim=1)) for block in self.blocks], dim=1)
        similarities = 2.0 * cosines.view(len(features), -1, self.proxies) - 2.0
        return (F.softmax(similarities, dim=2) * similarities).sum(dim=2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self.similarities(features)

    def scale_rows(self, start: int, stop: int, factor: torch.Tensor | float) -> None:
        raise TypeError("a local-similarity head's logits do not scale with its rows: weight aligning does not apply")

    @torch.no_grad()
    def imprint(self, features: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> None:
        """The last block's proxies: for each of its classes, the normalised centres of ``proxies``
        k-means clusters of the class's normalised ``features`` (labels: class positions), scaled to
        the older proxies' mean norm."""
        block = self.blocks[-1]
        classes = block.out_features // self.proxies
        first = self.num_classes - classes
        older = torch.cat([b.weight for b in self.blocks[:-1]]) if len(self.blocks) > 1 else block.weight
        norm = older.norm(dim=1).mean()
        unit = F.normalize(features.float(), dim=1)
        for row in range(classes):
            centres = kmeans(unit[labels == first + row], self.proxies, generator)
            block.weight[row * self.proxies : (row + 1) * self.proxies] = F.normalize(centres, dim=1) * norm


def kmeans(points: torch.Tensor, count: int, generator: torch.Generator, iterations: int = 20) -> torch.Tensor:
    """``count`` centres of ``points`` by Lloyd's algorithm from ``count`` distinct random points (a
    cluster that empties keeps its centre); with fewer points than centres they repeat."""
    start = torch.randperm(len(points), generator=generator)[:count]
    centres = points[start.repeat(count // len(start) + 1)[:count].to(points.device)].clone()
    for _ in range(iterations):
        nearest = torch.cdist(points, centres).argmin(dim=1)
        for k in range(count):
            members = points[nearest == k]
            if len(members):
                centres[k] = members.mean(dim=0)
    return centres

class BiasCorrectedClassifier(IncrementalClassifier):
    """A linear head with BiC's bias-correction layer per task (Wu et al., Large Scale Incremental
    Learning, CVPR 2019, Eq. 5): task t's logits o_k become

        q_k = alpha_t * o_k + beta_t

    ``corrections[t]`` holds (alpha_t, beta_t), starting at (1, 0), so a new task's logits are the
    linear ones until BiC's bias stage trains its pair; the first task's pair is never trained, and
    each later pair stays as its stage left it.
    """

    kind = "bias-corrected"
    aligns_by_rows = False
    help = "linear head with BiC's two-parameter bias correction of each task's logits"

    def __init__(self, in_features: int, num_classes: int = 0) -> None:
        super().__init__(in_features, 0)
        self.corrections = nn.ParameterList()
        self.grow(num_classes)

    def grow(self, num_classes: int) -> None:
        blocks = len(self.blocks)
        super().grow(num_classes)
        if len(self.blocks) > blocks:
            self.corrections.append(nn.Parameter(torch.tensor([1.0, 0.0], device=self.device_anchor.device)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.blocks:
            return features.new_zeros(features.shape[0], 0)
        return torch.cat([pair[0] * block(features) + pair[1] for block, pair in zip(self.blocks, self.corrections)],
                         dim=1)

    def scale_rows(self, start: int, stop: int, factor: torch.Tensor | float) -> None:
        raise TypeError("a bias-corrected head's logits do not scale with its rows: weight aligning does not apply")

@lru_cache(maxsize=32)
def unit_tasks(task_of_class: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The task of each unit as a tensor on ``device``, made once per layout and device (no copy per step)."""
    return torch.tensor(task_of_class, device=device)


HEADS: dict[str, type[IncrementalClassifier]] = {
    cls.kind: cls for cls in (IncrementalClassifier, MultiHeadClassifier, FixedClassifier, CosineClassifier,
                               LocalSimilarityClassifier, BiasCorrectedClassifier)
}
