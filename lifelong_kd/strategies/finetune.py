"""Fine-tuning: cross-entropy on the current task only, the lower bound."""

from .base import Strategy


class Finetune(Strategy):
    name = "finetune"
    paper = "lower bound: plain SGD on each task in turn (Mammoth's 'sgd')"
    help = "CE on the current task only; forgets everything else (lower bound)"
    defaults = {"lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}
