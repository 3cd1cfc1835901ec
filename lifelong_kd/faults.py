"""Kill points for the kill-and-resume tests.

With ``LIFELONG_KD_KILL_AT=name:count`` in the environment, the process sends itself SIGKILL the
``count``-th time it passes ``kill_point(name)``: a deterministic way to die mid-epoch
(``step``), during a memory update (``memory``), during an evaluation (``evaluate``) or halfway
through writing a checkpoint (``checkpoint``). ``name:count:INT`` (or ``TERM``) sends that
signal instead. Under torchrun, ``LIFELONG_KD_KILL_RANK=1`` restricts it to that rank, and it
strikes the first attempt only (not a group torchrun restarted). Without the variable a point
costs one lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "LIFELONG_KD_KILL_AT"
RANK_ENV = "LIFELONG_KD_KILL_RANK"
_passed: Counter[str] = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if ``LIFELONG_KD_KILL_AT`` names this pass of point ``name``."""
    spec = os.environ.get(ENV)
    rank = os.environ.get(RANK_ENV)
    if not spec or (rank is not None and rank != os.environ.get("RANK", "0")):
        return
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":  # a fault strikes the first attempt only
        return
    target, count, *sent = spec.split(":")
    if target != name:
        return
    _passed[name] += 1
    if _passed[name] == int(count):
        os.kill(os.getpid(), getattr(signal, f"SIG{sent[0]}") if sent else signal.SIGKILL)
