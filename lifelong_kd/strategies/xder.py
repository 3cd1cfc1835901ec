"""X-DER (Boschini et al., Class-Incremental Continual Learning into the eXtended DER-verse,
TPAMI 2022), in its cross-entropy form (Mammoth's ``xder_ce``: no contrastive future preparation).

DER++ on a head with units for every class of the stream (``fixed``), with:
- Current batch: CE over the current and future tasks' units only (Sec. 4.2), so learning the
  task pushes no past class down.
- DER's logit MSE (alpha) on the first replay half; DER++'s label CE (beta) on the second half,
  over the past tasks' units.
- Constraints (Sec. 4.3, eta, margin m), each a hinge averaged over the rows where it is violated:
  past: max softmax over past units (detached) + m - max softmax over the current task's units, on
  the current batch; future: max logit over future units + m - max logit over the row's own
  task's units, on the current and replayed rows.
- Memory: DER's reservoir during the first task; from its end on, class-balanced (M // C per
  seen class, the first M % C classes one more; Mammoth spreads the remainder over the new classes
  at random), each new sample stored with its logits.
- Past-logit update (Sec. 4.1, ``damped_transplant``): a stored sample's logits for the units of
  tasks after its own are replaced by the current model's, scaled by gamma * z_y / max when their
  maximum would exceed the stored true-class logit z_y. At each task's end every past sample gets
  the just-learnt task's units; during training, each replayed past sample (the k-th time it is
  drawn in the task, with probability 1/k) gets the current and future units.
- New samples' past units are damped the same way before they are stored.
Defaults: Mammoth's ``xder_ce.yaml`` for Seq-CIFAR-100 at M = 500 (alpha 0.3, beta 0.5, eta 5e-3,
lr 0.03) and its parser (gamma 0.85, m 0.3). Differences from Mammoth: the two replay halves are
drawn without replacement (no duplicate to remove), and a new sample's logits at a task's end come
from the model in eval mode on the un-augmented image (Mammoth: train mode, augmented).
"""

from typing import Any

import torch
import torch.nn.functional as F

from ..buffer import rebuild_balanced
from ..context import Step, TaskContext
from ..errors import UsageError
from ..heads import unit_tasks
from ..models import ContinualModel
from ..settings import ALPHA, BETA, Setting
from .base import current
from .derpp import DERpp

MAMMOTH = "Mammoth xder_ce.yaml, Seq-CIFAR-100 M = 500"


class XDER(DERpp):
    name = "xder"
    paper = "Boschini et al., Class-Incremental Continual Learning into the eXtended DER-verse, TPAMI 2022"
    help = "DER++ with past-logit updates, CE on current+future units and past/future logit constraints"
    settings = (
        *(s.with_default(0.03, MAMMOTH) if s.name == "lr" else s for s in DERpp.settings
          if s.name not in ("alpha", "beta")),
        ALPHA.with_default(0.3, MAMMOTH),
        BETA.with_default(0.5, MAMMOTH),
        Setting("eta", 5e-3, "X-DER's weight of the past and future logit constraints", low=0.0, source=MAMMOTH),
        Setting("constraint_margin", 0.3, "X-DER's margin m of the past and future logit constraints", low=0.0,
                source="Mammoth xder_ce.py"),
        Setting("gamma", 0.85, "X-DER's damping of transplanted logits", low=0.0, high=1.0,
                source="Mammoth xder_ce.py"),
    )
    memory_defaults = {}
    head = "fixed"

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.draws: torch.Tensor | None = None  # per memory slot: times drawn this task (the update's odds)

    def check_model(self, model: ContinualModel) -> None:
        if not model.head.future_units:
            raise UsageError(f"xder needs a head with units for future classes (--head fixed), not "
                             f"'{model.head.kind}'")

    def check_stream(self, num_classes: int) -> None:
        """The memory is class-balanced after the first task: it must hold a sample of every class."""
        if int(self.hparams["memory"]) < num_classes:
            raise UsageError(f"--memory {self.hparams['memory']} is smaller than the stream's {num_classes} classes: "
                             f"X-DER's class-balanced memory would leave some without a sample")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "draws": self.draws}

    def load_state_dict(self, state: dict[str, Any], ctx: TaskContext) -> None:
        super().load_state_dict(state, ctx)
        self.draws = state["draws"]

    def before_task(self, ctx: TaskContext) -> None:
        super().before_task(ctx)
        self.draws = torch.zeros(self.buffer.capacity, dtype=torch.long, device=self.buffer.device)

    def current_loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """CE of the current rows over the current and future tasks' units."""
        n = step.n_current
        return F.cross_entropy(step.logits[:n, ctx.n_old :], step.y[:n] - ctx.n_old)

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        value = self.current_loss(ctx, step)
        if step.replay is not None:
            half = (len(step.replay) + 1) // 2
            value = value + self.logit_loss(ctx, step, 0, half)
            if len(step.replay) > half:
                rows = slice(step.n_current + half, step.n_current + len(step.replay))
                past = ctx.n_old or ctx.n_seen  # the first task's own units while it is the only one
                value = value + self.hparams["beta"] * F.cross_entropy(step.logits[rows, :past], step.y[rows])
        return value + self.hparams["eta"] * (self.past_constraint(ctx, step) + self.future_constraint(ctx, step))

    def past_constraint(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """mean over violating current rows of max_past p (detached) + m - max_current p, p the softmax
        over the seen units."""
        if not ctx.n_old:
            return step.logits.new_zeros(())
        p = F.softmax(current(step, step.logits)[:, : ctx.n_seen].float(), dim=1)
        margin = self.hparams["constraint_margin"]
        gap = p[:, : ctx.n_old].max(1).values.detach() + margin - p[:, ctx.n_old :].max(1).values
        return _violations_mean(gap, ctx)

    def future_constraint(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        """mean over violating rows of max_future z + m - max z over the row's own task's units."""
        if ctx.n_seen == ctx.model.num_classes:
            return step.logits.new_zeros(())
        logits = step.logits.float()
        unit_task = unit_tasks(ctx.stream.task_of_class[: logits.shape[1]], logits.device)
        own = unit_task.unsqueeze(0) == unit_task[step.y].unsqueeze(1)
        gap = logits[:, ctx.n_seen :].max(1).values + self.hparams["constraint_margin"] - logits.masked_fill(
            ~own, float("-inf")).max(1).values
        return _violations_mean(gap, ctx)

    def after_step(self, ctx: TaskContext, step: Step) -> None:
        """The first task's reservoir (DER's); after it, each replayed past sample drawn for the k-th time
        this task gets, with probability 1/k, the current and future units of its logits from this step."""
        if not ctx.n_old:
            super().after_step(ctx, step)
            return
        if step.replay is None:
            return
        slots = step.replay.index.to(self.buffer.device)  # distinct: drawn without replacement
        self.draws[slots] += 1
        coin = torch.rand(len(slots), generator=self.buffer.rng).to(self.buffer.device)
        chosen = (coin * self.draws[slots] < 1).unsqueeze(1)
        stored = self.buffer.logits[slots]
        outputs = step.logits[step.n_current :].detach().float().to(stored.device)
        updated = damped_transplant(stored, outputs, self.buffer.y[slots], ctx.n_old, stored.shape[1],
                                    self.hparams["gamma"])
        self.buffer.logits[slots] = torch.where(chosen, updated, stored)  # no host sync

    def after_task(self, ctx: TaskContext) -> None:
        """The memory becomes class-balanced with the task's samples and their (damped) logits; the past
        samples get the just-learnt task's units."""
        if not ctx.n_old:
            self.buffer.clear()
        if self.buffer.logits is None:
            self.buffer.logits = torch.zeros(self.buffer.capacity, ctx.model.num_classes, device=self.buffer.device)
        rebuild_balanced(self.buffer, ctx.task.train.x, ctx.task.train.y, ctx.task.index)
        x, y, _ = self.buffer.contents()
        logits = ctx.model.head(ctx.features_of(x)).detach().float().to(self.buffer.device)
        new = torch.nonzero(y >= ctx.n_old).flatten()
        past = torch.nonzero(y < ctx.n_old).flatten()
        own = logits[new]
        self.buffer.logits[new] = damped_transplant(own.clone(), own, y[new], 0, ctx.n_old, self.hparams["gamma"])
        self.buffer.logit_units[new] = logits.shape[1]
        self.buffer.logits[past] = damped_transplant(self.buffer.logits[past], logits[past], y[past], ctx.n_old,
                                                     ctx.n_seen, self.hparams["gamma"])


def damped_transplant(stored: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor, start: int, stop: int,
                      gamma: float) -> torch.Tensor:
    """X-DER's logit update (Sec. 4.1): ``stored`` with units [start, stop) replaced by ``outputs``'; a row
    whose transplanted maximum exceeds its stored true-class logit z_y has them scaled by gamma * z_y / max.

        z[start:stop] = o[start:stop] * (gamma * z_y / max_k o_k  if max_k o_k > z_y  else 1)
    """
    result = stored.clone()
    if stop <= start:
        return result
    transplant = outputs[:, start:stop]
    truth = stored.gather(1, labels.unsqueeze(1)).squeeze(1)
    peak = transplant.max(1).values
    scale = torch.where(peak > truth, gamma * truth / peak, torch.ones_like(peak))  # no host sync
    result[:, start:stop] = transplant * scale.unsqueeze(1)
    return result


def _violations_mean(gap: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
    """The mean of ``gap`` over its positive entries (zero when none); on many processes the count is the
    global batch's divided by the number of processes, so that the processes' average is the global mean."""
    violated = gap > 0
    return (gap * violated).sum() / ctx.dist.mean(violated.sum().float()).clamp(min=1)
