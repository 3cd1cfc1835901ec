"""ER-ACE (Caccia et al., New Insights on Reducing Abrupt Representation Change in Online Continual
Learning, ICLR 2022).

Asymmetric cross-entropy (Sec. 4): the incoming samples' cross-entropy is taken over the classes
present in the incoming batch only, so learning them pushes no absent class's unit down; the
replayed samples' cross-entropy is over every seen class, as in ER:

    L = CE(f(x_in)[:, C_in], y_in) + CE(f(x_buf), y_buf)

Each term is the mean over its own rows. As in the authors' code and Mammoth's ``er_ace``, the
first task is not masked and replays nothing (the memory fills during it), and a fixed head leaves
the units of classes not seen yet unmasked.
Under torchrun ``C_in`` is the whole incoming batch's classes (``Step.current_labels``).
Defaults: ER's Seq-CIFAR-10 grid (lr 0.1, reservoir memory); the paper tunes on other streams.
"""

import torch

from ..buffer import ReplaySample
from ..context import Step, TaskContext
from ..settings import training_settings
from .base import classification_loss
from .replay import ReplayStrategy, replay_settings


class ERACE(ReplayStrategy):
    name = "er-ace"
    paper = "Caccia et al., New Insights on Reducing Abrupt Representation Change in Online CL, ICLR 2022"
    help = "ER with an asymmetric CE: incoming samples compete only among the classes present in their batch"
    settings = (*training_settings(0.1, source="ER's DER-paper grid (no published Seq-CIFAR-10 ER-ACE grid)"),
                *replay_settings())

    def replay_batch(self, ctx: TaskContext, generator: torch.Generator) -> ReplaySample | None:
        return super().replay_batch(ctx, generator) if ctx.n_old else None

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        n = step.n_current
        value = classification_loss(ctx, step.y[:n], incoming_logits(ctx, step))
        if step.replay is not None and len(step.replay):
            value = value + classification_loss(ctx, step.y[n:], step.logits[n:])
        return value


def incoming_logits(ctx: TaskContext, step: Step) -> torch.Tensor:
    """The incoming rows' logits with every unit of a seen class absent from the incoming batch at -inf
    (after the first task; a fixed head's units of classes not seen yet stay)."""
    logits = step.logits[: step.n_current]
    if ctx.n_old == 0:
        return logits
    present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    present[step.current_labels] = True
    present[ctx.n_seen :] = True
    return logits.masked_fill(~present, float("-inf"))
