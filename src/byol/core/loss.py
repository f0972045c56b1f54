"""The BYOL loss (paper, Eq. 2 and the symmetrised loss that follows it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """2 - 2 cos(q, z') per sample: the mean squared error of the L2-normalised vectors."""
    p = F.normalize(prediction.float(), dim=-1)
    z = F.normalize(target.float(), dim=-1)
    return 2.0 - 2.0 * (p * z).sum(dim=-1)


def byol_loss(q1: torch.Tensor, q2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Symmetric BYOL loss, batch mean: L(q1, z2') + L(q2, z1').

    The two directions are *summed*, as in the paper; averaging them instead halves the
    gradient and, with a learning rate tuned for the sum, costs accuracy.
    Targets must come from the target network, without gradient.
    """
    return (regression_loss(q1, z2.detach()) + regression_loss(q2, z1.detach())).mean()


def small_crops_loss(small_predictions, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Multi-crop: each small crop's online prediction regressed onto the target's projections
    of both full views, summed over the crops and the two targets, batch mean: as solo-learn's
    BYOL pairs them (every crop predicts each full view's target but its own). With no small
    crops: 0. Added to `byol_loss`, which holds the pairs of the two full views: the total is
    a sum over 2 + 2k pairs, not their mean, so k crops raise the loss by about (2 + 2k) / 2
    and the gradient with it, as a larger learning rate would."""
    loss = z1.new_zeros((), dtype=torch.float32)
    for q in small_predictions:
        loss = loss + (regression_loss(q, z1.detach()) + regression_loss(q, z2.detach())).mean()
    return loss
