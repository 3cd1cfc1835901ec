"""Where the loop is (``Position``), and how a run is asked to stop (SIGINT, SIGTERM)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Position:
    """Where the loop is. ``stage`` is ``train`` (at ``phase``, ``epoch``, ``step`` of ``task``) or
    ``evaluate`` (the task is trained; its evaluation is next)."""

    task: int = 0
    stage: str = "train"
    phase: int = 0
    epoch: int = 0
    step: int = 0

    def describe(self) -> str:
        if self.stage == "evaluate":
            return f"after training task {self.task + 1}"
        return f"in task {self.task + 1}, phase {self.phase + 1}, epoch {self.epoch + 1}, step {self.step}"


class RunInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was written and the run stopped."""

    def __init__(self, signal_number: int, where: str) -> None:
        super().__init__(f"interrupted {where}")
        self.signal_number = signal_number


_received: list[int] = []  # the signals ``stop_requests`` caught in this process, in order


def pending_stop() -> int | None:
    """The first stop signal caught since ``clear_stop_requests``, if any (a ``--seeds`` run checks it
    between seeds: a signal in a seed's last moments stops the group after that seed)."""
    return _received[0] if _received else None


def clear_stop_requests() -> None:
    _received.clear()


@contextmanager
def stop_requests(request_stop: Callable[[int], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM call ``request_stop(signal_number)`` instead of killing the
    process; the loop reads the request after each step. Main thread only (elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def caught(number: int, _frame: object) -> None:
        _received.append(number)
        request_stop(number)

    previous = {number: signal.signal(number, caught) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
