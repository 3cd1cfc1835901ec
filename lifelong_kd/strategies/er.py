"""Experience Replay (Chaudhry et al., On Tiny Episodic Memories in Continual Learning, 2019).

CE on the current batch and a replay batch of the same size, forwarded
together (one batch, one mean). Defaults: the DER paper's Seq-CIFAR-10 grid
(Buzzega et al. 2020, appendix): lr 0.1, replay batch 32, reservoir memory.
"""

import torch

from ..context import Step, TaskContext
from ..settings import training_settings
from .base import classification_loss
from .replay import ReplayStrategy, replay_settings


class ER(ReplayStrategy):
    name = "er"
    paper = "Chaudhry et al., On Tiny Episodic Memories in Continual Learning, 2019"
    help = "CE on the current batch + a replay batch from a reservoir memory"
    settings = (*training_settings(0.1, source="DER paper appendix, Seq-CIFAR-10 'ER' grid"), *replay_settings())

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return classification_loss(ctx, step.y, step.logits)
