"""BatchNorm over the global batch of all processes, on CPU (gloo) as on CUDA (``--sync-bn``).

PyTorch's ``nn.SyncBatchNorm`` runs on GPUs only. ``GlobalBatchNorm2d`` is a ``BatchNorm2d`` (same
parameters, buffers and state-dict keys, so checkpoints move between process counts) whose
training forward normalises with the statistics of the whole global batch:

    mean_c = sum_{all processes, n, h, w} x / N,   var_c = sum x^2 / N - mean_c^2

with ``N`` the global count of values per channel (the three sums in one all-reduce, so a layer
synchronises the processes once forward and once backward), and updates the running statistics as
BatchNorm does (running_var with the unbiased ``var * N / (N - 1)``). The sums are
all-reduced with a differentiable all-reduce (``all_reduce_sum``), whose backward sums the
gradients of every process: the gradient is the single-process one of the global batch. On one
process, or in eval mode, it is ``BatchNorm2d``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class AllReduceSum(torch.autograd.Function):
    """y = sum over the processes of x, on every process. Each process's loss depends on y, so the
    gradient of the total loss with respect to a process's x is the sum of the processes' gradients
    with respect to y: the backward is the same all-reduce."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``AllReduceSum``: the sum over the processes, differentiable."""
    return AllReduceSum.apply(tensor)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` with the statistics of the global batch across processes (see the module)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        values = x.float()
        channels = values.shape[1]
        count = torch.tensor([values.numel() / channels], device=x.device)
        totals = all_reduce_sum(torch.cat([values.sum((0, 2, 3)), (values * values).sum((0, 2, 3)), count]))
        n = totals[-1]
        mean = totals[:channels] / n
        var = (totals[channels:-1] / n - mean * mean).clamp(min=0.0)
        out = (values - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(var * n / (n - 1), momentum)


def global_batch_norm(module: nn.Module) -> nn.Module:
    """``module`` with every ``BatchNorm2d`` replaced, in place, by a ``GlobalBatchNorm2d`` holding the
    same parameters and statistics."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.to(next(iter(child.state_dict().values())).device)
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            global_batch_norm(child)
    return module
