"""Backbones (images -> feature vectors) and the continual model around them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UsageError
from .heads import HEADS, IncrementalClassifier

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (He et al. 2016).

    ``shortcut="conv"`` projects with a 1x1 convolution when the shape changes
    (option B, ResNet-18); ``shortcut="pad"`` subsamples and zero-pads the
    channels (option A, the CIFAR ResNet-32 of iCaRL and PyCIL).
    """

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "conv", relu: bool = True) -> None:
        super().__init__()
        self.relu = relu
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        self.pad_channels = 0
        if stride != 1 or in_planes != planes:
            if shortcut == "conv":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
            else:
                self.shortcut = nn.AvgPool2d(1, stride=stride)
                self.pad_channels = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.shortcut(x)
        if self.pad_channels:
            identity = F.pad(identity, (0, 0, 0, 0, 0, self.pad_channels))
        out = out + identity
        return F.relu(out) if self.relu else out


class ResNet(nn.Module):
    """CIFAR ResNet: a 3x3 stride-1 stem, no max-pool, global average pooling.

    ``widths`` gives each stage's channels and ``blocks`` its block count; the
    first stage keeps the resolution, every later one halves it. ``forward(x, stages=True)``
    also returns each stage's output map (PODNet's spatial distillation); without it the
    blocks run as one ``nn.Sequential``. ``last_relu=False``
    leaves out the ReLU after the last block, so the features can be negative
    (LUCIR, Sec. 3.2; PODNet): the cosine head and the less-forget term see them.
    """

    def __init__(
        self, blocks: tuple[int, ...], widths: tuple[int, ...], in_channels: int = 3, shortcut: str = "conv",
        last_relu: bool = True,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv3x3(in_channels, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU())
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for stage, (count, width) in enumerate(zip(blocks, widths)):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                last = stage == len(blocks) - 1 and block == count - 1
                layers.append(BasicBlock(in_planes, width, stride, shortcut, relu=last_relu or not last))
                in_planes = width
        self.layers = nn.Sequential(*layers)
        self.stage_ends = tuple(sum(blocks[: stage + 1]) for stage in range(len(blocks)))
        self.out_features = in_planes

    def forward(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.stem(x)
        if not stages:
            return F.adaptive_avg_pool2d(self.layers(out), 1).flatten(1)
        maps = []
        for index, block in enumerate(self.layers, start=1):
            out = block(out)
            if index in self.stage_ends:
                maps.append(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1), maps


class SmallCNN(nn.Module):
    """Two conv-BN-ReLU layers pooled to 2x2: 128 features, for tests and the demo (``last_relu``: as
    ``ResNet``'s)."""

    def __init__(self, in_channels: int = 3, last_relu: bool = True) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32),
            nn.ReLU() if last_relu else nn.Identity(),
        )
        self.out_features = 128

    def forward(self, x: torch.Tensor, stages: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        maps = [self.body[:3](x)]
        maps.append(self.body[3:](maps[0]))
        features = F.adaptive_avg_pool2d(maps[-1], 2).flatten(1)
        return (features, maps) if stages else features


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[[int, bool], nn.Module]  # (in_channels, last_relu)
    help: str


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "reduced-resnet18",
            lambda c, last_relu=True: ResNet((2, 2, 2, 2), (20, 40, 80, 160), c, last_relu=last_relu),
            "ResNet-18 with nf=20 (GEM, Mammoth, Avalanche's SlimResNet18); 160 features, ~1.1M parameters",
        ),
        ModelSpec(
            "resnet18",
            lambda c, last_relu=True: ResNet((2, 2, 2, 2), (64, 128, 256, 512), c, last_relu=last_relu),
            "ResNet-18 with a CIFAR stem (3x3 conv, no max-pool); 512 features, ~11M parameters",
        ),
        ModelSpec(
            "resnet32",
            lambda c, last_relu=True: ResNet((5, 5, 5), (16, 32, 64), c, shortcut="pad", last_relu=last_relu),
            "CIFAR ResNet-32 with zero-padding shortcuts (iCaRL, PyCIL); 64 features, ~0.46M parameters",
        ),
        ModelSpec("small-cnn", SmallCNN, "two-layer CNN, 128 features: tests and the digits demo"),
    )
}

class ContinualModel(nn.Module):
    """A backbone followed by a classifier head (``lifelong_kd.heads``); ``forward`` returns logits."""

    def __init__(self, backbone: nn.Module, head: IncrementalClassifier) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def grow(self, num_classes: int) -> None:
        """Give the head units for classes ``0 .. num_classes - 1``."""
        self.head.grow(num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_model(
    name: str, in_channels: int, num_classes: int, head: str = "incremental", last_relu: bool = True,
) -> ContinualModel:
    """Build backbone ``name`` with a ``head`` of the given kind (``lifelong_kd.heads.HEADS``).

    ``num_classes`` is the stream's total; only the ``fixed`` head uses it up front. ``last_relu=False``:
    the features before the last ReLU (LUCIR, PODNet).
    """
    if name not in MODELS:
        raise UsageError(f"unknown model '{name}': choose --model from {', '.join(MODELS)} (see `lifelong-kd list`)")
    if head not in HEADS:
        raise UsageError(f"unknown head '{head}': choose --head from {', '.join(HEADS)}")
    backbone = MODELS[name].build(in_channels, last_relu)
    return ContinualModel(backbone, HEADS[head].build(backbone.out_features, num_classes))


def frozen_copy(model: ModuleT) -> ModuleT:
    """A deep copy in eval mode whose parameters require no gradient: the teacher."""
    teacher = copy.deepcopy(model)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher
