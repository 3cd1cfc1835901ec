"""A strategy's settings, declared once: default, valid values, help and source.

A strategy lists its ``Setting`` objects; its constructor resolves them (the
declared defaults, then the per-memory defaults, then the user's values) and
checks each against its range. The CLI builds one flag per setting name from
these declarations (``add_strategy_flags``), so no second list of options,
defaults or ranges exists anywhere.

Design: ``lifelong_kd/DESIGN.md``, "A method is one file".
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import UsageError


class Group(Enum):
    """Where a setting's flag is listed in ``lifelong-kd run --help``."""

    TRAINING = "training"
    DISTILLATION = "distillation"
    REPLAY = "replay"


@dataclass(frozen=True)
class Setting:
    """One hyperparameter of a strategy.

    ``default`` also fixes the type (bool, int, float or str). Numbers must lie
    in ``[low, high]`` (``low`` excluded when ``low_open``); strings must be
    one of ``choices``. ``source`` says where the default comes from, ``group``
    where ``--help`` lists it.
    """

    name: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    source: str = ""
    group: Group = Group.DISTILLATION

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def with_default(self, default: Any, source: str = "") -> Setting:
        """The same setting with another default (and the source of that default)."""
        return dataclasses.replace(self, default=default, source=source or self.source)

    def check(self, value: Any) -> Any:
        """``value`` converted to the setting's type, or a ``UsageError`` naming the flag and the valid values."""
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise UsageError(f"{self.flag} takes true or false, not {value!r}")
            return value
        if kind is str:
            if self.choices and value not in self.choices:
                raise UsageError(f"unknown {self.flag} '{value}': choose from {', '.join(self.choices)}")
            return value
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise UsageError(f"{self.flag} takes a number, not {value!r}") from None
        if kind is int and number != value:
            raise UsageError(f"{self.flag} takes a whole number, not {value!r}")
        if not math.isfinite(number):
            raise UsageError(f"{self.flag} takes a finite number, not {value}: use a value {self.range_text()}")
        too_low = self.low is not None and (number < self.low or (self.low_open and number == self.low))
        too_high = self.high is not None and number > self.high
        if too_low or too_high:
            raise UsageError(f"{self.flag} {value} is out of range: use a value {self.range_text()}")
        return number

    def range_text(self) -> str:
        if isinstance(self.default, bool):
            return f"{self.flag}/--no-{self.flag[2:]}"
        if self.choices:
            return "|".join(self.choices)
        low = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(part for part in (low, high) if part) or "any"


LR = Setting("lr", 0.1, "learning rate", low=0.0, low_open=True, group=Group.TRAINING)
MOMENTUM = Setting("momentum", 0.0, "SGD momentum", low=0.0, high=1.0, group=Group.TRAINING)
WEIGHT_DECAY = Setting("weight_decay", 0.0, "L2 weight decay", low=0.0, group=Group.TRAINING)
ALPHA = Setting("alpha", 1.0, "weight of the distillation term", low=0.0)
TEMPERATURE = Setting("temperature", 2.0, "distillation temperature T", low=0.0, low_open=True, high=1e3)
T2 = Setting("t2", False, "multiply the KL term by T^2 (Hinton et al. 2015)")
BETA = Setting("beta", 0.5, "weight of the CE on a second replay batch's labels", low=0.0, group=Group.REPLAY)
WARMUP_EPOCHS = Setting(
    "warmup_epochs", 0, "epochs training only the new head units before each task (-1: as many as --epochs)", low=-1,
    group=Group.TRAINING,
)
MEMORY = Setting("memory", 500, "replay memory budget M in samples", low=1, group=Group.REPLAY)
MEMORY_POLICY = Setting(
    "memory_policy", "reservoir", "how the memory is filled",
    choices=("reservoir", "class-balanced", "herding"), group=Group.REPLAY,
)
REPLAY_BATCH_SIZE = Setting("replay_batch_size", 0, "replayed samples per step (0: the batch size)", low=0,
                            group=Group.REPLAY)


def training_settings(lr: float, momentum: float = 0.0, weight_decay: float = 0.0, source: str = "") -> tuple:
    """The optimiser settings every strategy declares, with its own defaults."""
    return (
        LR.with_default(lr, source),
        MOMENTUM.with_default(momentum, source),
        WEIGHT_DECAY.with_default(weight_decay, source),
    )


def add_strategy_flags(groups: Mapping[Group, argparse._ArgumentGroup], strategies: Iterable[type]) -> None:
    """One flag per setting name of ``strategies`` (each a class with a ``settings`` tuple and its
    ``memory_defaults``), in the group of ``groups`` its setting names.

    The flag's default is None (the strategy's default applies); its help names
    the range and each strategy's default, and the defaults a memory size changes.
    Values are checked by the strategy.
    """
    by_name: dict[str, list[tuple[type, Setting]]] = {}
    for cls in strategies:
        for setting in cls.settings:
            by_name.setdefault(setting.name, []).append((cls, setting))
    for uses in by_name.values():
        setting = uses[0][1]
        group = groups[setting.group]
        defaults = ", ".join(f"{cls.name} {_text(s.default)}" + "".join(
            f" ({_text(changes[s.name])} at --memory {memory})" for memory, changes in cls.memory_defaults.items()
            if s.name in changes) for cls, s in uses)
        help_text = f"{setting.help} [{setting.range_text()}]; default: {defaults}"
        kind = type(setting.default)
        if kind is bool:
            group.add_argument(setting.flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif setting.choices:
            choices = list(dict.fromkeys(choice for _, s in uses for choice in s.choices))
            help_text = f"{setting.help}; default: {defaults}"
            group.add_argument(setting.flag, choices=choices, default=None, help=help_text)
        else:
            group.add_argument(setting.flag, type=kind, default=None, metavar=kind.__name__.upper(), help=help_text)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
