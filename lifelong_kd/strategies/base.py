"""The strategy interface: the hooks a method may override, and plain CE.

Design: ``lifelong_kd/DESIGN.md``, "The hooks".
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..buffer import ReplaySample
from ..context import Phase, Step, TaskContext
from ..data import Split
from ..errors import UsageError
from ..losses import kl_distillation
from ..models import ContinualModel
from ..settings import Setting, training_settings


class Strategy:
    """A continual-learning method: what differs from plain fine-tuning.

    Hooks, in the order the runner calls them for each task:
    ``before_task``; ``phases`` (the task's training phases, as data: by
    default one, the main phase); ``training_split`` (the main phase's data);
    every step of the main phase ``replay_batch`` (samples to append to the
    current batch), ``loss``, ``after_step``; then ``after_task``.
    ``eval_scores`` adds classifiers to the evaluation (iCaRL's nearest mean
    of exemplars). ``state_dict`` / ``load_state_dict`` carry what the
    strategy has learnt of the stream (a memory, class means) through a
    checkpoint.

    ``settings`` declares the method's hyperparameters once (default, range,
    help, source: ``lifelong_kd.settings``), the optimiser's included;
    ``memory_defaults`` overrides some defaults for a given memory size, as
    the papers tune per budget; ``hparams`` holds the resolved values.
    ``head`` is the head layout the method's paper uses; ``broken_heads``
    names the layouts known to break the method, with the reason; ``check_model``
    refuses a model the method cannot work with at all. ``features_before_relu``
    asks for a backbone without its last ReLU (LUCIR, PODNet).
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    help: ClassVar[str]
    settings: ClassVar[tuple[Setting, ...]] = training_settings(0.1)
    memory_defaults: ClassVar[dict[int, dict[str, Any]]] = {}
    head: ClassVar[str] = "incremental"
    broken_heads: ClassVar[dict[str, str]] = {}
    requires_head: ClassVar[bool] = False  # the method works only on its paper's head
    features_before_relu: ClassVar[bool] = False
    uses_stages: ClassVar[bool] = False  # the training forward also returns the backbone's stage outputs

    def __init__(self, **overrides: Any) -> None:
        given = {key: value for key, value in overrides.items() if value is not None}
        declared = {setting.name: setting for setting in self.settings}
        unknown = set(given) - set(declared)
        if unknown:
            flags = ", ".join(sorted("--" + key.replace("_", "-") for key in unknown))
            raise UsageError(
                f"strategy '{self.name}' takes no option {flags}: its options are "
                f"{', '.join(setting.flag for setting in self.settings)}"
            )
        memory = given.get("memory", declared["memory"].default if "memory" in declared else None)
        chosen = {**{key: s.default for key, s in declared.items()}, **self.memory_defaults.get(memory, {}), **given}
        self.hparams: dict[str, Any] = {key: declared[key].check(value) for key, value in chosen.items()}

    def head_warning(self, head_kind: str) -> str | None:
        """Why ``head_kind`` breaks this method, as one line, or None when it does not."""
        if head_kind not in self.broken_heads:
            return None
        return f"head '{head_kind}' with {self.name}: {self.broken_heads[head_kind]} (its paper uses '{self.head}')"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The declared default of every setting (before per-memory defaults)."""
        return {setting.name: setting.default for setting in cls.settings}

    def check_model(self, model: ContinualModel) -> None:
        """Raise ``UsageError`` when the method cannot work with ``model``: by default, when it
        ``requires_head`` and the model has another."""
        if self.requires_head and model.head.kind != self.head:
            raise UsageError(f"{self.name} needs the {self.head} head (--head {self.head}), not '{model.head.kind}'")

    def check_stream(self, num_classes: int) -> None:
        """Raise ``UsageError`` when the settings cannot work on a stream of ``num_classes`` classes."""

    def resolve_loop_settings(self, epochs: int) -> None:
        """Resolve, once, the settings whose default follows the loop's (``epochs`` per task)."""

    def training_split(self, ctx: TaskContext) -> Split:
        return ctx.task.train

    def before_task(self, ctx: TaskContext) -> None:
        """Called after the head has grown, before training the task."""

    def phases(self, ctx: TaskContext, epochs: int) -> tuple[Phase, ...]:
        """The task's training phases, in order; by default the main phase alone, ``epochs`` long."""
        return (Phase("main", epochs),)

    def state_dict(self) -> dict[str, Any]:
        """What the strategy has accumulated over the stream, as tensors and plain containers."""
        return {}

    def load_state_dict(self, state: dict[str, Any], ctx: TaskContext) -> None:
        """Restore ``state_dict``'s result (``ctx``: the task the run resumes in)."""

    def replay_batch(self, ctx: TaskContext, generator: torch.Generator) -> ReplaySample | None:
        """Samples to train on together with the current batch (none by default)."""
        return None

    def loss(self, ctx: TaskContext, step: Step) -> torch.Tensor:
        return classification_loss(ctx, step.y, step.logits)

    def after_step(self, ctx: TaskContext, step: Step) -> None:
        """Called after the optimizer step (e.g. to store the batch in a memory)."""

    def after_task(self, ctx: TaskContext) -> None:
        """Called after training the task, before the teacher snapshot."""

    def memory_bytes(self) -> int:
        """The bytes of the strategy's replay memory (none by default)."""
        return 0

    def eval_scores(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra classifiers' scores (higher is better) from test features, by name."""
        return {}


def classification_loss(ctx: TaskContext, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the units the head trains (``trained_logits``): the classes seen so far;
    a fixed head's every unit, as Mammoth does; with one head per task (task-IL) the sample's own
    task's units."""
    return F.cross_entropy(ctx.model.head.trained_logits(logits, y, ctx.n_seen, ctx.stream.task_of_class), y)


def old_share_weighted_loss(ctx: TaskContext, step: Step, temperature: float) -> torch.Tensor:
    """BiC's Eq. 4 (WA's Eq. 5): (1 - n/(n+m)) * CE + n/(n+m) * KL(teacher/T || student/T) on the n old
    units, for n old and m new classes."""
    ce = classification_loss(ctx, step.y, step.logits)
    if ctx.teacher is None:
        return ce
    share = ctx.n_old / ctx.n_seen
    teacher = ctx.teacher_logits(step.x)[:, : ctx.n_old]
    return (1.0 - share) * ce + share * kl_distillation(step.logits[:, : ctx.n_old], teacher, temperature)


def current(step: Step, tensor: torch.Tensor) -> torch.Tensor:
    """The rows of ``tensor`` that belong to the current task's batch."""
    return tensor[: step.n_current]
