"""Batched augmentation of uint8 image tensors, on the tensors' device.

Random crop with zero padding, horizontal flip and per-channel
normalisation, as torchvision's ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()`` and ``Normalize`` do per image, but for a whole
batch in a few tensor ops and without PIL.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class BatchAugment:
    """Turn a uint8 batch (N, C, H, W) into a normalised float batch.

    ``train(x, generator)`` crops and flips at random; ``eval(x)`` only
    normalises. ``channels_last`` returns the batch in that memory format.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 4,
        hflip: bool = True,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        self.mean = torch.tensor(mean, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.crop_padding = crop_padding
        self.hflip = hflip
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        """(x / 255 - mean) / std, as float32."""
        out = (x.float() - self.mean) / self.std
        return out.contiguous(memory_format=self.memory_format)

    def train(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop (zero padding), random horizontal flip, then ``eval``."""
        n, _, height, width = x.shape
        if self.crop_padding:
            pad = self.crop_padding
            padded = F.pad(x, (pad, pad, pad, pad))
            offsets = torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator, device=x.device)
            rows = offsets[0] + torch.arange(height, device=x.device)
            cols = offsets[1] + torch.arange(width, device=x.device)
            batch = torch.arange(n, device=x.device).view(n, 1, 1)
            x = padded[batch, :, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)
        if self.hflip:
            flip = torch.rand(n, generator=generator, device=x.device) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return self.eval(x)
