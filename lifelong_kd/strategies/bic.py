"""BiC (Wu et al., Large Scale Incremental Learning, CVPR 2019).

On herding exemplars (``ExemplarStrategy``) and a linear head with a bias-correction layer per task
(``BiasCorrectedClassifier``), each task after the first trains in two stages:
- Stage 1 (Eq. 1-4), on the exemplars and the new data less a held-out validation set:

      L = lambda * L_d + (1 - lambda) * L_c,   lambda = n / (n + m)

  for n old and m new classes; L_c is the CE over all n + m classes and L_d the distillation
  sum_k -pi_hat_k(T) log pi_k(T) of the old model's (bias-corrected) logits at T = 2, taken here
  as KL(pi_hat || pi), which differs from it by the teacher's entropy, a constant.
- Stage 2 (Eq. 5), the bias correction: everything frozen but the newest task's (alpha, beta),
  which minimise the CE on the validation set, q_k = alpha * o_k + beta for the new classes. That CE
  is convex in (alpha, beta) (a log-sum-exp of logits affine in them, less one of them), so this file
  solves for its minimum (``fit_bias_correction``) on the held-out samples' features, instead of
  taking a fixed number of gradient steps: Mammoth's 250 epochs of Adam at lr 1e-3 move each
  parameter by at most about 1 on a held-out set of 2 to 4 batches, and stopped BiC's correction
  short at this library's memories (class-IL 33.59 against 43.55 at lr 1e-2, seed 0, M = 500).
- The validation set is class-balanced: the paper's 9:1 split of the old classes' exemplars, and
  as many samples of each new class, drawn from the new data (``validation_fraction``; at least one
  per class, never an old class's last exemplar).
- The memory is M samples in all, M // C per seen class (like every replay method here); the paper's
  CIFAR-100 runs keep 2,000.
Defaults: the paper's CIFAR-100 setting (Sec. 5.1: SGD lr 0.1, weight decay 2e-4, T 2, 9:1 split;
momentum 0.9 as in WA, which follows it). Mammoth's lambda is 1 / (t + 1), which equals n / (n + m)
only at the second task; this file follows the paper.
"""

from typing import Any

import torch

from ..context import Phase, Step, TaskContext
from ..data import Split, concat_splits
from ..settings import TEMPERATURE, Group, Setting, training_settings
from .base import old_share_weighted_loss
from .exemplars import ExemplarStrategy
from .replay import replay_settings

PAPER = "BiC paper Sec. 5.1, CIFAR-100"


class BiC(ExemplarStrategy):
    name = "bic"
    paper = "Wu et al., Large Scale Incremental Learning, CVPR 2019"
    help = "n/(n+m)-weighted KD + CE, then a 2-parameter bias correction of the new logits on a held-out set"
    head = "bias-corrected"
    requires_head = True
    settings = (
        *training_settings(0.1, momentum=0.9, weight_decay=2e-4, source=PAPER),
        *replay_settings(("herding", "class-balanced"), replay_batches=False),
        TEMPERATURE.with_default(2.0, PAPER),
        Setting("validation_fraction", 0.1, "share of each old class's exemplars held out for the bias stage",
                low=0.0, high=0.5, low_open=True, source=PAPER + " (9:1)", group=Group.REPLAY),
        Setting("bias_prior", 1e-2, "weight of the penalty (prior/2) |(alpha - 1, beta)|^2 of the bias stage's fit: "
                "a minimum exists where the held-out set is separable", low=0.0, low_open=True,
                source="this library (the paper fits Eq. 5 by SGD, whose stopping point is the limit)",
                group=Group.TRAINING),
    )

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.held_out: dict[str, torch.Tensor] | None = None  # rows of the memory and of the task's data

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "held_out": self.held_out}

    def load_state_dict(self, state: dict[str, Any], ctx: TaskContext) -> None:
        super().load_state_dict(state, ctx)
        self.held_out = state["held_out"]

    def before_task(self, ctx: TaskContext) -> None:
        """Hold out, at random, ``validation_fraction`` of each old class's exemplars (at least 1, and
        never a class's last one) and as many samples of each new class; the same draw on every process
        (``TaskContext.task_generator``). With a single exemplar per class nothing is held out and
        the task has no bias stage."""
        super().before_task(ctx)
        self.held_out = None
        if not ctx.n_old:
            return
        _, memory_y, _ = self.buffer.contents()
        memory_y, task_y = memory_y.cpu(), ctx.task.train.y
        smallest = min(int((memory_y == c).sum()) for c in range(ctx.n_old))
        per_class = min(max(1, round(self.hparams["validation_fraction"] * smallest)), smallest - 1)
        if per_class < 1:
            return
        generator = ctx.task_generator()

        def draw(labels: torch.Tensor, classes: range) -> torch.Tensor:
            rows = [torch.nonzero(labels == c).flatten() for c in classes]
            return torch.cat([r[torch.randperm(len(r), generator=generator)[:per_class]] for r in rows]).sort().values

        self.held_out = {"memory": draw(memory_y, range(ctx.n_old)), "task": draw(task_y, ctx.task.classes)}

    def training_split(self, ctx: TaskContext) -> Split:
        if self.held_out is None:
            return super().training_split(ctx)
        memory = self._memory_split()
        keep_memory = _without(len(memory), self.held_out["memory"])
        keep_task = _without(len(ctx.task.train), self.held_out["task"])
        train = ctx.task.train
        return concat_splits([Split(train.x[keep_task], train.y[keep_task]),
                              Split(memory.x[keep_memory], memory.y[keep_memory])])

    def validation_split(self, ctx: TaskContext) -> Split:
        """The held-out exemplars of the old classes, then the held-out samples of the new ones."""
        memory, train = self._memory_split(), ctx.task.train
        rows_memory, rows_task = self.held_out["memory"], self.held_out["task"]
        return concat_splits([Split(memory.x[rows_memory], memory.y[rows_memory]),
                              Split(train.x[rows_task], train.y[rows_task])])

    def _memory_split(self) -> Split:
        x, y, _ = self.buffer.contents()
        return Split(x.cpu(), y.cpu())

    def phases(self, ctx: TaskContext, epochs: int) -> tuple[Phase, ...]:
        """Stage 1 trains all but the correction layers (stage 2 is ``after_task``'s fit)."""
        corrections = {id(pair) for pair in ctx.model.head.corrections}
        return (Phase("main", epochs, parameters=lambda model: [
            p for p in model.parameters() if id(p) not in corrections]),)

    def after_task(self, ctx: TaskContext) -> None:
        """Stage 2 on the held-out samples (before the memory changes, since they are rows of it), then
        the memory update."""
        if self.held_out is not None:
            validation = self.validation_split(ctx)
            head = ctx.model.head
            with torch.no_grad():
                features = ctx.features_of(validation.x)
                pair = fit_bias_correction(head(features)[:, : ctx.n_old], head.blocks[-1](features),
                                           validation.y.to(features.device), self.hparams["bias_prior"])
                head.corrections[-1].copy_(pair)
        super().after_task(ctx)

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return old_share_weighted_loss(ctx, step, self.hparams["temperature"])


def bias_corrected_ce(old: torch.Tensor, new: torch.Tensor, labels: torch.Tensor,
                      pair: torch.Tensor) -> torch.Tensor:
    """BiC's stage-2 objective (Eq. 5): the mean CE of ``labels`` over the logits [old, alpha * new + beta],
    ``pair`` = (alpha, beta); ``old`` are the old classes' logits (their own corrections applied)."""
    logits = torch.cat([old, pair[0] * new + pair[1]], dim=1)
    return torch.nn.functional.cross_entropy(logits, labels)


def fit_bias_correction(old: torch.Tensor, new: torch.Tensor, labels: torch.Tensor, prior: float,
                        max_iterations: int = 100) -> torch.Tensor:
    """The (alpha, beta) minimising ``bias_corrected_ce`` + (prior/2) |(alpha - 1, beta)|^2, from (1, 0), by
    L-BFGS with a strong-Wolfe line search in float64: the objective is convex and smooth in the two
    parameters, so this reaches its minimum whatever the size of the held-out set. The prior makes it
    strictly convex, so a minimum exists even where the held-out set is separable (the CE alone then
    falls towards 0 as alpha grows); ``max_iterations`` bounds the solver."""
    old, new = old.detach().double(), new.detach().double()
    start = torch.tensor([1.0, 0.0], dtype=torch.float64, device=new.device)
    pair = start.clone().requires_grad_()
    solver = torch.optim.LBFGS([pair], lr=1.0, max_iter=max_iterations, tolerance_grad=1e-10,
                               tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        solver.zero_grad()
        loss = bias_corrected_ce(old, new, labels, pair) + 0.5 * prior * (pair - start).square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        solver.step(objective)
    return pair.detach().float()


def _without(count: int, rows: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(count, dtype=torch.bool)
    keep[rows] = False
    return keep
