import math

import pytest
import torch

from lifelong_kd.losses import kl_distillation, mse_distillation


def _softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_kl_distillation_by_hand():
    student, teacher, temperature = [1.0, 2.0, 0.0], [2.0, 1.0, 0.5], 2.0
    p = _softmax([v / temperature for v in teacher])
    q = _softmax([v / temperature for v in student])
    expected = sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q))
    s, t = torch.tensor([student]), torch.tensor([teacher])
    assert kl_distillation(s, t, temperature).item() == pytest.approx(expected, rel=1e-6)
    assert kl_distillation(s, t, temperature, scale_by_t2=True).item() == pytest.approx(4 * expected, rel=1e-6)


def test_kl_is_a_batch_mean_and_zero_when_equal():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    one = kl_distillation(s[:1], t[:1])
    assert kl_distillation(s, t).item() == pytest.approx(one.item() / 2)
    assert kl_distillation(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_mse_distillation_by_hand():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [5.0, 4.0]])
    assert mse_distillation(s, t).item() == pytest.approx((1 + 0 + 4 + 0) / 4)


def test_losses_run_in_float32_under_bf16_inputs():
    s = torch.tensor([[1.0, 2.0]], dtype=torch.bfloat16, requires_grad=True)
    t = torch.tensor([[2.0, 1.0]], dtype=torch.bfloat16)
    loss = kl_distillation(s, t)
    assert loss.dtype == torch.float32
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad.float()).all()
