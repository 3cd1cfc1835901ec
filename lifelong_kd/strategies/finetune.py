"""Fine-tuning: cross-entropy on the current task only, the lower bound."""

from ..settings import training_settings
from .base import Strategy


class Finetune(Strategy):
    name = "finetune"
    paper = "lower bound: plain SGD on each task in turn (Mammoth's 'sgd')"
    help = "CE on the current task only; forgets everything else (lower bound)"
    settings = training_settings(0.1, source="DER paper appendix, Seq-CIFAR-10 'SGD' grid")
