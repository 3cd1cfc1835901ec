"""lifelong_kd: continual learning with knowledge distillation."""

from typing import Any

__version__ = "0.1.0"


def run(**settings: Any) -> dict[str, Any]:
    """Train like ``lifelong-kd run`` and return the results document; see ``lifelong_kd.api.run``."""
    from .api import run as api_run  # imported on first use: ``import lifelong_kd`` stays light (no torch)

    return api_run(**settings)
