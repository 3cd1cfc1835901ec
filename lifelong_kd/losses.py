"""Distillation losses: pure functions of tensors, no host sync.

They compute in float32 whatever the autocast dtype of the logits, and they
distil the units they are given: callers slice the old classes' units
(``logits[:, :n_old]``), as LwF does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_distillation(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 2.0,
    scale_by_t2: bool = False,
) -> torch.Tensor:
    """Knowledge-distillation loss of Hinton et al. (2015), used by LwF (Li & Hoiem, 2017).

    With p = softmax(t / T) (teacher) and q = softmax(s / T) (student):

        L = mean_over_batch( sum_k p_k * (log p_k - log q_k) ) = KL(p || q)

    times T^2 when ``scale_by_t2`` (Hinton's correction that keeps gradient
    magnitudes independent of T). KL differs from LwF's cross-entropy form
    -sum p log q only by the teacher's entropy, a constant for the student.
    """
    log_q = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    loss = (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
    return loss * temperature**2 if scale_by_t2 else loss


def mse_distillation(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Logit matching (Ba & Caruana, 2014; DER's replay term, Buzzega et al. 2020).

        L = mean_{i, k} (s_ik - t_ik)^2   over the batch and the given units.
    """
    return (student_logits.float() - teacher_logits.float()).pow(2).mean()
