"""ER + knowledge distillation: experience replay (Chaudhry et al. 2019) plus
LwF's KL(teacher/T || student/T) on the old units (Li & Hoiem 2017), computed
on the current and the replayed samples alike, as in the replay + KD
baselines of iCaRL and EEIL (Castro et al. 2018). No published Seq-CIFAR-10
grid exists; the defaults take ER's lr 0.1 and LwF's T = 2 with alpha = 1.
"""

import torch

from ..context import Step, TaskContext
from .lwf import ce_plus_distillation
from .replay import REPLAY_DEFAULTS, ReplayStrategy


class ERKD(ReplayStrategy):
    name = "er-kd"
    paper = "ER (Chaudhry et al. 2019) + LwF distillation (Li & Hoiem 2017), as in EEIL (Castro et al. 2018)"
    help = "ER + alpha * KL(teacher/T || student/T) on the old units, on current and replayed samples"
    defaults = {
        "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0, **REPLAY_DEFAULTS,
        "alpha": 1.0, "temperature": 2.0, "t2": False,
    }
    ranges = {"alpha": (0.0, 1e6), "temperature": (1e-3, 1e3)}

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return ce_plus_distillation(ctx, step, self.hparams)
