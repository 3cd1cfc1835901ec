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


def masked_mse_distillation(
    student_logits: torch.Tensor, stored_logits: torch.Tensor, stored_units: torch.Tensor,
    compared: torch.Tensor | None = None,
) -> torch.Tensor:
    """DER's logit replay with a growing head (Buzzega et al. 2020, Eq. 6).

    Sample i's stored logits cover the ``stored_units[i]`` units that existed
    when it was stored; only those are compared:

        L = sum_{i, k < u_i} (s_ik - z_ik)^2 / sum_i u_i

    ``compared`` replaces the denominator sum_i u_i: on many processes, the global batch's count
    divided by the number of processes, so that the average of the processes' losses is the
    global batch's (``Distributed.mean``).
    """
    width = stored_logits.shape[1]
    mask = torch.arange(width, device=stored_units.device) < stored_units.unsqueeze(1)
    squared = (student_logits[:, :width].float() - stored_logits.float()).pow(2) * mask
    return squared.sum() / (mask.sum() if compared is None else compared).clamp(min=1)


def sigmoid_distillation(
    logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None
) -> torch.Tensor:
    """iCaRL's classification + distillation loss (Rebuffi et al. 2017, Alg. 3).

    Binary cross-entropy on every unit of ``logits``: the target of the old
    units (the teacher's) is the teacher's sigmoid, that of the others the
    one-hot label:

        L = -mean_{i,k} [ t_ik log sigma(s_ik) + (1 - t_ik) log(1 - sigma(s_ik)) ]
    """
    targets = F.one_hot(labels, logits.shape[1]).float()
    if teacher_logits is not None:
        old = teacher_logits.shape[1]
        targets[:, :old] = torch.sigmoid(teacher_logits.float())
    return F.binary_cross_entropy_with_logits(logits.float(), targets)


def cosine_feature_distillation(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """LUCIR's less-forget constraint (Hou et al. 2019, Eq. 6) on normalised features.

        L = mean_i (1 - cos(f_student(x_i), f_teacher(x_i)))
    """
    cosine = F.cosine_similarity(student_features.float(), teacher_features.float(), dim=1)
    return (1.0 - cosine).mean()


def margin_ranking(cosines: torch.Tensor, labels: torch.Tensor, n_old: int, hard: int = 2,
                   margin: float = 0.5, compared: torch.Tensor | None = None) -> torch.Tensor:
    """LUCIR's inter-class separation (Hou et al. 2019, Eq. 8), on the cosine scores (no scale).

    For every sample of an old class (label < ``n_old``), its ground-truth score must beat each of the
    ``hard`` highest new-class scores (units ``n_old ..``) by ``margin``:

        L = sum_{i old, k <= K} max(m - cos(theta_{y_i}, f_i) + cos(theta_k, f_i), 0) / (K * #old)

    the mean over the old samples' K pairs, as LUCIR's code (``nn.MarginRankingLoss``); zero when the
    batch holds no old-class sample. ``compared`` replaces the denominator K * #old: on many processes
    the global batch's, divided by the number of processes (see ``masked_mse_distillation``).
    No host sync: the old rows are a mask, not a selection.
    """
    scores = cosines.float()
    truth = scores.gather(1, labels.unsqueeze(1))
    hardest = scores[:, n_old:].topk(min(hard, scores.shape[1] - n_old), dim=1).values
    old = (labels < n_old).unsqueeze(1)
    hinge = (margin - truth + hardest).clamp(min=0) * old
    count = old.sum() * hardest.shape[1] if compared is None else compared
    return hinge.sum() / count.clamp(min=1)


def pod_spatial(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
    """PODNet's POD-spatial distillation (Douillard et al. 2020, Eq. 2-4), over L stage outputs:

        L = (1/L) sum_l mean_i || P(h_l,i) / ||P(h_l,i)|| - P(h*_l,i) / ||P(h*_l,i)|| ||_2

    where P(h) concatenates the width-pooled and the height-pooled squared activations,
    sum_w h^2 (C x H values) and sum_h h^2 (C x W values).
    """
    total = student_maps[0].new_zeros((), dtype=torch.float32)
    for student, teacher in zip(student_maps, teacher_maps):
        pooled = [torch.cat([(h.float() ** 2).sum(dim=3).flatten(1), (h.float() ** 2).sum(dim=2).flatten(1)], dim=1)
                  for h in (student, teacher)]
        difference = F.normalize(pooled[0], dim=1) - F.normalize(pooled[1], dim=1)
        total = total + difference.norm(dim=1).mean()
    return total / len(student_maps)


def nca_loss(logits: torch.Tensor, labels: torch.Tensor, margin: float | torch.Tensor) -> torch.Tensor:
    """PODNet's NCA loss (Douillard et al. 2020, Eq. 9) as its authors' code computes it
    (``losses.nca`` with ``exclude_pos_denominator``, no hinge), on logits z = eta * s (s the
    similarities, eta the learnt scale) with the margin in the logits' units, ``margin`` = eta * delta:

        z'_i = z_i - margin * onehot(y_i),   L = mean_i [ log( sum_{c != y_i} exp(z'_ic) + exp(max_c z'_ic) ) - z'_iy ]

    Eq. 9's denominator leaves the true class out; the code's keeps exp(max_c z'_c) instead (it
    zeroes the true class's entry after subtracting the row's maximum). The loss is unchanged by a
    shift of the whole row, which is why the code's margin (subtracted from every entry) has no effect.
    """
    rows = torch.arange(len(labels), device=logits.device)
    z = logits.float().clone()
    z[rows, labels] = z[rows, labels] - margin
    shifted = z - z.max(dim=1, keepdim=True).values
    truth = shifted[rows, labels]
    denominator = shifted.clone()
    denominator[rows, labels] = 0.0  # exp(0): the row's maximum, in place of the true class
    return (torch.logsumexp(denominator, dim=1) - truth).mean()
