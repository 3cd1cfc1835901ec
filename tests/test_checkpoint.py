"""Checkpoint files: atomic writes, the previous one kept, safe loading, random generators restored."""

import random

import numpy as np
import pytest
import torch

from lifelong_kd.checkpoint import (
    CHECKPOINT,
    FORMAT,
    PREVIOUS,
    load_checkpoint,
    random_state,
    restore_random_state,
    save_checkpoint,
)
from lifelong_kd.errors import UsageError


def _state(step: int) -> dict:
    return {"format": FORMAT, "position": {"task": 0, "step": step}, "weights": torch.full((3,), float(step)),
            "names": ["a", None]}


def test_the_newest_and_the_previous_checkpoint_are_kept(tmp_path):
    for step in range(3):
        save_checkpoint(tmp_path, _state(step))
    assert {p.name for p in tmp_path.iterdir()} == {CHECKPOINT, PREVIOUS}  # no temporary files left
    state, warnings = load_checkpoint(tmp_path)
    assert state["position"]["step"] == 2 and torch.equal(state["weights"], torch.full((3,), 2.0))
    assert warnings == []
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["position"]["step"] == 1


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "missing"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_with_one_warning(tmp_path, damage):
    save_checkpoint(tmp_path, _state(1))
    save_checkpoint(tmp_path, _state(2))
    newest = tmp_path / CHECKPOINT
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:200])
    elif damage == "empty":
        newest.write_bytes(b"")
    elif damage == "garbage":
        newest.write_bytes(b"\x80\x04not a checkpoint at all")
    else:
        newest.unlink()
    state, warnings = load_checkpoint(tmp_path)
    assert state["position"]["step"] == 1
    assert len(warnings) == 1 and str(newest) in warnings[0]
    assert warnings[0].endswith(f"resuming from {tmp_path / PREVIOUS}")


def test_no_readable_checkpoint_is_one_usage_error(tmp_path):
    (tmp_path / CHECKPOINT).write_bytes(b"")
    with pytest.raises(UsageError, match="no checkpoint to resume from") as error:
        load_checkpoint(tmp_path)
    assert "\n" not in str(error.value) and PREVIOUS in str(error.value)


class Planted:
    """Any class: loading it would import and run code."""


def test_a_checkpoint_that_needs_code_to_load_is_refused(tmp_path):
    """weights_only: a pickled object other than tensors and plain containers does not load."""
    torch.save({"format": FORMAT, "position": {}, "object": Planted()}, tmp_path / CHECKPOINT)
    with pytest.raises(UsageError, match="unreadable"):
        load_checkpoint(tmp_path)


def test_random_generators_continue_exactly_after_a_restore(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    random.random(), np.random.rand(), torch.rand(2)
    save_checkpoint(tmp_path, {"format": FORMAT, "position": {}, "random": random_state()})
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_random_state(load_checkpoint(tmp_path)[0]["random"])
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert again[0] == expected[0] and again[1] == expected[1] and torch.equal(again[2], expected[2])
