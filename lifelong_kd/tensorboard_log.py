"""TensorBoard scalars for a run, over ``torch.utils.tensorboard.SummaryWriter``.

The optional ``tensorboard`` package is imported only when a :class:`TensorBoardLog` is constructed;
without it construction raises :class:`~lifelong_kd.errors.UsageError` naming the extra to install.

Tags written:

- ``train/loss``, ``train/lr``, ``train/images_per_second`` at the training step (:meth:`TensorBoardLog.training`);
- after each task (:meth:`TensorBoardLog.task_end`), at that task's final step: ``task/index``,
  ``<matrix>/task_<j>`` for every accuracy-matrix row entry that has a value (``class_il``, ``task_il``,
  ``nme_class_il``, ...), and ``metrics/<setting>/<name>`` for every numeric metric.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import UsageError

INSTALL_HINT = "pip install 'lifelong_kd[tensorboard]'"


def _is_number(value: object) -> bool:
    """Whether ``value`` is a real number to log (``bool`` is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TensorBoardLog:
    """Scalar logging of training and per-task evaluation to a TensorBoard event file under ``log_dir``."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        """Open a ``SummaryWriter`` writing under ``log_dir`` (created when missing); with ``purge_step``
        (a resumed run's step) the events logged at or after it before the interruption are dropped.

        Raises:
            UsageError: the ``tensorboard`` package cannot be imported.
        """
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise UsageError(f"TensorBoard logging needs the tensorboard package: {INSTALL_HINT}") from error
        self.log_dir = Path(log_dir)
        self._writer: Any = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge_step)

    def training(self, step: int, loss: float, lr: float, images_per_second: float) -> None:
        """Write ``train/loss``, ``train/lr`` and ``train/images_per_second`` at global step ``step``."""
        self._writer.add_scalar("train/loss", float(loss), global_step=step)
        self._writer.add_scalar("train/lr", float(lr), global_step=step)
        self._writer.add_scalar("train/images_per_second", float(images_per_second), global_step=step)

    def task_end(
        self,
        task: int,
        step: int,
        rows: dict[str, list[float | None]],
        metrics: dict[str, dict[str, float]],
    ) -> None:
        """Write the end-of-task scalars at global step ``step``.

        Args:
            task: index of the task just finished, written as ``task/index``.
            step: global training step the scalars are written at.
            rows: accuracy-matrix rows after this task, by matrix name; entry ``j`` is written as
                ``<name>/task_<j>``, and ``None`` entries (tasks not evaluated) are skipped.
            metrics: metric values by setting; each numeric one is written as ``metrics/<setting>/<name>``,
                other values (``None``, nested data) are skipped.
        """
        self._writer.add_scalar("task/index", float(task), global_step=step)
        for name, row in rows.items():
            for j, value in enumerate(row):
                if value is not None:
                    self._writer.add_scalar(f"{name}/task_{j}", float(value), global_step=step)
        for setting, values in metrics.items():
            for metric, value in values.items():
                if _is_number(value):
                    self._writer.add_scalar(f"metrics/{setting}/{metric}", float(value), global_step=step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file; further calls are no-ops."""
        self._writer.close()

    def __enter__(self) -> TensorBoardLog:
        """Return this log, closed on leaving the ``with`` block."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the log."""
        self.close()
