"""Projector and predictor MLPs (BYOL paper, Section 3.3)."""
from __future__ import annotations

from torch import nn

HEAD_BIASES = ("hidden", "output", "both")


class MLP(nn.Sequential):
    """Linear(in, hidden) - BatchNorm1d - ReLU - Linear(hidden, out).

    The paper's projector and predictor both have this shape, hidden 4096 and output 256.
    bias="hidden": the first Linear has a bias and the last none, as in DeepMind's
    byol/utils/networks.py (`MLP`); bias="output": the other way round, as lightly's
    BYOLProjectionHead and BYOLPredictionHead (no bias before a BatchNorm1d, one on the output);
    bias="both": on both, PyTorch's default, as solo-learn's BYOL heads (nn.Linear twice).
    batch_norm=False drops the BatchNorm1d (an ablation; also a head whose output does not
    depend on how a batch is split across processes when SyncBatchNorm is unavailable).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256, batch_norm: bool = True,
                 bias: str = "hidden"):
        if bias not in HEAD_BIASES:
            raise ValueError(f"bias must be one of {', '.join(HEAD_BIASES)}, got {bias!r}")
        super().__init__(
            nn.Linear(in_dim, hidden_dim, bias=bias in ("hidden", "both")),
            nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim, bias=bias in ("output", "both")),
        )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
