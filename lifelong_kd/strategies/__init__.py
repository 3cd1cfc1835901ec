"""Strategy registry: one short file per method."""

from typing import Any

from ..errors import UsageError
from .base import Strategy
from .bic import BiC
from .der import DER
from .derpp import DERpp
from .er import ER
from .er_ace import ERACE
from .er_kd import ERKD
from .finetune import Finetune
from .icarl import ICaRL
from .joint import Joint
from .kd_mse import KDMSE
from .lucir import LUCIR
from .lwf import LwF
from .podnet import PODNet
from .wa import WA
from .xder import XDER

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Finetune, Joint, LwF, KDMSE, ER, ERKD, ERACE, ICaRL, BiC, WA, LUCIR, PODNet, DER, DERpp, XDER)
}


def build_strategy(name: str, **overrides: Any) -> Strategy:
    """The strategy ``name`` with its defaults updated by the non-None ``overrides``."""
    if name not in STRATEGIES:
        raise UsageError(
            f"unknown strategy '{name}': choose --strategy from {', '.join(STRATEGIES)} (see `lifelong-kd list`)"
        )
    return STRATEGIES[name](**overrides)


__all__ = ["STRATEGIES", "Strategy", "build_strategy"]
