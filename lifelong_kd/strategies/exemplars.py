"""What the exemplar methods (iCaRL, WA, LUCIR) share: a herding memory of exemplars that join the
training set, and the nearest-mean-of-exemplars classifier (Rebuffi et al., iCaRL, CVPR 2017).

- Training set: the current task's data plus the exemplar memory (no separate replay batches).
- Memory: herding on L2-normalised features, M // C exemplars per class in priority order; old
  classes keep their first exemplars (iCaRL, Alg. 4, 5). ``class-balanced`` picks them at random.
- Classifier: nearest mean of exemplars, the class means of the exemplars' normalised features
  and those of their horizontal flips (where the stream allows flips), normalised (iCaRL, Alg. 1),
  reported as ``nme`` beside the head's accuracy.
- Class-balanced fine-tuning (LUCIR, Sec. 3.4; PODNet, Sec. 4.2), for the methods that use it: a
  phase after the main one that tunes only the head, the backbone frozen, on the updated memory
  (as many samples of every class).
"""

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..buffer import ReplaySample, herding_order, rebuild_balanced
from ..context import Phase, Step, TaskContext
from ..data import Split, concat_splits
from .replay import ReplayStrategy


class ExemplarStrategy(ReplayStrategy):
    """A replay strategy whose exemplars join the training set; it adds only its loss (and hooks)."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.class_means: torch.Tensor | None = None
        self.memory_task = -1  # the last task whose samples entered the memory

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "class_means": self.class_means, "memory_task": self.memory_task}

    def load_state_dict(self, state: dict[str, Any], ctx: TaskContext) -> None:
        super().load_state_dict(state, ctx)
        means = state["class_means"]
        self.class_means = None if means is None else means.to(ctx.device)
        self.memory_task = state.get("memory_task", -1)  # checkpoints before the field: not yet for this task

    def training_split(self, ctx: TaskContext) -> Split:
        if not len(self.buffer):
            return ctx.task.train
        x, y, _ = self.buffer.contents()
        return concat_splits([ctx.task.train, Split(x.cpu(), y.cpu())])

    def replay_batch(self, ctx: TaskContext, generator: torch.Generator) -> ReplaySample | None:
        return None

    def after_step(self, ctx: TaskContext, step: Step) -> None:
        """The memory changes only at the end of a task."""

    def after_task(self, ctx: TaskContext) -> None:
        self.update_memory(ctx)
        self.class_means = self.exemplar_means(ctx)

    def update_memory(self, ctx: TaskContext) -> None:
        """The task's exemplars enter the memory, once per task (a resumed fine-tuning phase finds them there)."""
        if self.memory_task == ctx.task.index:
            return
        if self.hparams["memory_policy"] == "herding":
            train = ctx.task.train
            features = ctx.features_of(train.x)
            per_class = int(self.hparams["memory"]) // ctx.n_seen + 1
            order = {
                c: herding_order(features[train.y.to(features.device) == c], per_class).cpu()
                for c in ctx.task.classes
            }
            rebuild_balanced(self.buffer, train.x, train.y, ctx.task.index, order)
        else:
            super().after_task(ctx)
        self.memory_task = ctx.task.index

    def main_phase_without_old_rows(self, ctx: TaskContext, epochs: int) -> Phase:
        """The main phase, training everything but the head's rows of the old classes (LUCIR's and PODNet's
        authors' code: the old classes' embeddings at lr 0)."""
        old_rows = {id(block.weight) for block in ctx.model.head.blocks[:-1]}
        return Phase("main", epochs, parameters=lambda model: [p for p in model.parameters() if id(p) not in old_rows])

    def balanced_finetuning(self, epochs: int, lr: float, loss: Callable[[TaskContext, Step], torch.Tensor]) -> Phase:
        """The class-balanced fine-tuning phase: ``epochs`` of SGD at ``lr`` on the head alone, on the
        updated memory, with ``loss``."""
        return Phase("balanced fine-tuning", epochs, loss=loss, parameters=lambda model: model.head.parameters(),
                     freeze_backbone=True, data=self.balanced_split, optimizer=("sgd", lr))

    def balanced_split(self, ctx: TaskContext) -> Split:
        """The memory once the task's exemplars are in it: as many samples of every seen class."""
        self.update_memory(ctx)
        x, y, _ = self.buffer.contents()
        return Split(x.cpu().clone(), y.cpu().clone())  # a copy: the memory changes after the task

    def exemplar_means(self, ctx: TaskContext) -> torch.Tensor:
        """Normalised mean of the normalised features of each class's exemplars and their flips."""
        x, y, _ = self.buffer.contents()
        features = F.normalize(ctx.features_of(x), dim=1)
        if ctx.stream.hflip:
            features = features + F.normalize(ctx.features_of(x.flip(3)), dim=1)
        means = torch.zeros(ctx.n_seen, features.shape[1], device=features.device)
        means.index_add_(0, y.to(features.device), features)
        return F.normalize(means, dim=1)

    def eval_scores(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Nearest mean of exemplars: the score is minus the distance to each class mean."""
        if self.class_means is None:
            return {}
        return {"nme": -torch.cdist(F.normalize(features.float(), dim=1), self.class_means)}
