"""ER + knowledge distillation: experience replay (Chaudhry et al. 2019) plus
LwF's KL(teacher/T || student/T) on the old units (Li & Hoiem 2017), computed
on the current and the replayed samples alike, as in the replay + KD
baselines of iCaRL and EEIL (Castro et al. 2018). No published Seq-CIFAR-10
grid exists; the defaults take ER's lr 0.1 and LwF's T = 2 with alpha = 1.
"""

import torch

from ..context import Step, TaskContext
from ..settings import ALPHA, T2, TEMPERATURE, training_settings
from .lwf import ce_plus_distillation
from .replay import ReplayStrategy, replay_settings


class ERKD(ReplayStrategy):
    name = "er-kd"
    paper = "ER (Chaudhry et al. 2019) + LwF distillation (Li & Hoiem 2017), as in EEIL (Castro et al. 2018)"
    help = "ER + alpha * KL(teacher/T || student/T) on the old units, on current and replayed samples"
    settings = (
        *training_settings(0.1, source="ER's lr (no published grid)"), *replay_settings(),
        ALPHA.with_default(1.0, "no published grid"), TEMPERATURE.with_default(2.0, "LwF"), T2,
    )

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return ce_plus_distillation(ctx, step, self.hparams)
