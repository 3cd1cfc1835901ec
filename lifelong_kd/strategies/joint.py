"""Joint training on all the data seen so far, the upper bound."""

from ..context import TaskContext
from ..data import Split, concat_splits
from ..settings import training_settings
from .base import Strategy


class Joint(Strategy):
    name = "joint"
    paper = "upper bound: cumulative training on every task seen so far (Avalanche's Cumulative)"
    help = "trains each task on the union of all tasks seen so far (upper bound)"
    settings = training_settings(0.1, source="DER paper appendix, Seq-CIFAR-10 'JOINT' grid")

    def training_split(self, ctx: TaskContext) -> Split:
        return concat_splits([task.train for task in ctx.seen_tasks])
