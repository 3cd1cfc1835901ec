"""Shared fixtures: a tiny, learnable synthetic task stream."""

import numpy as np
import pytest
import torch

from lifelong_kd.data import TaskStream, tensor_stream
from lifelong_kd.models import build_model
from lifelong_kd.strategies import STRATEGIES
from lifelong_kd.training import TrainConfig, seed_everything


def synthetic_images(num_classes: int, per_class: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 3, size, size): each class is noise around its own colour and bright quadrant."""
    rng = np.random.default_rng(seed)
    colours = np.random.default_rng(1234).integers(40, 216, size=(num_classes, 3))
    xs, ys = [], []
    for c in range(num_classes):
        base = np.broadcast_to(colours[c][:, None, None], (3, size, size)).astype(np.float64)
        images = base + rng.normal(0, 20, size=(per_class, 3, size, size))
        quadrant = c % 4
        rows = slice(0, size // 2) if quadrant < 2 else slice(size // 2, size)
        cols = slice(0, size // 2) if quadrant % 2 == 0 else slice(size // 2, size)
        images[:, :, rows, cols] += 60
        xs.append(np.clip(images, 0, 255).astype(np.uint8))
        ys.append(np.full(per_class, c))
    return np.concatenate(xs), np.concatenate(ys)


def make_tiny_stream(num_classes: int = 6, n_tasks: int = 3, per_class: int = 24) -> TaskStream:
    train_x, train_y = synthetic_images(num_classes, per_class, seed=0)
    test_x, test_y = synthetic_images(num_classes, per_class // 2, seed=1)
    return tensor_stream(train_x, train_y, test_x, test_y, n_tasks, name="tiny", crop_padding=1)


@pytest.fixture
def tiny_stream() -> TaskStream:
    return make_tiny_stream()


def tiny_model(stream: TaskStream, head: str = "incremental", seed: int = 0, last_relu: bool = True):
    seed_everything(seed)
    return build_model("small-cnn", stream.image_shape[0], stream.num_classes, head, last_relu)


def tiny_model_for(stream: TaskStream, strategy: str, seed: int = 0):
    """The small CNN with the head and features ``strategy``'s paper uses, as ``lifelong-kd run`` builds it."""
    cls = STRATEGIES[strategy]
    return tiny_model(stream, cls.head, seed, last_relu=not cls.features_before_relu)


def tiny_config(**changes) -> TrainConfig:
    """The tests' loop: exact float32 eager numerics unless a test asks otherwise."""
    options = {"epochs": 2, "batch_size": 16, "eval_batch_size": 64, "log_every": 3,
               "amp": "off", "channels_last": False, "compile": "off"}
    options.update(changes)
    return TrainConfig(**options)


@pytest.fixture
def no_threads_change():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
