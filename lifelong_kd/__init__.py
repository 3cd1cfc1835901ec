"""lifelong_kd: continual learning with knowledge distillation."""

__version__ = "0.1.0"
