"""The target network's exponential moving average (paper, Section 3.1)."""
from __future__ import annotations

import math

import torch
from torch import nn


def cosine_tau(step: int, total_steps: int, tau_base: float = 0.996, tau_final: float = 1.0) -> float:
    """tau = tau_final - (tau_final - tau_base) (cos(pi k / K) + 1) / 2.

    tau_base at step 0, tau_final (the paper: 1) at the end; tau_final = tau_base keeps tau
    constant. Updated per training step k of K, as in the paper (not per epoch).
    """
    if total_steps <= 0:
        return tau_base
    progress = min(max(step / total_steps, 0.0), 1.0)
    return tau_final - (tau_final - tau_base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def float_state(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Parameters and floating-point buffers (BN running mean/var), in a fixed order."""
    tensors = [p for p in module.parameters()]
    tensors += [b for b in module.buffers() if b.is_floating_point()]
    other = [b for b in module.buffers() if not b.is_floating_point()]
    return tensors, other


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, for every parameter and float buffer.

    One fused `torch._foreach_lerp_` over all tensors, not a Python loop of small ops.
    Integer buffers (BN's num_batches_tracked) are copied.
    """
    t_float, t_other = float_state(target)
    o_float, o_other = float_state(online)
    if len(t_float) != len(o_float):
        raise ValueError("target and online networks differ in structure")
    torch._foreach_lerp_(t_float, o_float, 1.0 - tau)
    for t, o in zip(t_other, o_other):
        t.copy_(o)
