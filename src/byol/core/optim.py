"""Optimisers and the learning-rate schedule (BYOL paper, Section 3.3 and Appendix C).

Paper, ImageNet: LARS, base learning rate 0.2 scaled by batch/256 (so 3.2 at 4096), a
cosine decay over the run after 10 warm-up epochs, global weight decay 1.5e-6, momentum
0.9, trust coefficient 1e-3; biases and batch-norm parameters are excluded from both the
weight decay and the LARS adaptation.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch import nn

OPTIMIZERS = ("lars", "sgd", "adam", "adamw")


def is_excluded(param: torch.Tensor) -> bool:
    """Biases and normalisation scales/shifts: every 1-D (or 0-D) parameter.

    Decided by what a parameter is, not by its name: a name test like ".bn" or ".bias"
    misses the projector's BatchNorm1d (`projector.1.weight`) and ResNet's downsample BN
    (`downsample.1.weight`): a name-based rule would miss them.
    """
    return param.ndim <= 1


def param_groups(module: nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True,
                 lr_scales: dict[nn.Module, float] | None = None) -> list[dict]:
    """Decayed and LARS-adapted weights first, then the excluded biases and norm parameters;
    split further by `lr_scales` ({sub-module: factor of the learning rate}): the parameters of
    each sub-module named there are groups of their own, group keys "lr_scale" (its factor) and
    "part" (its place in lr_scales; -1 for the rest), so that a schedule can treat it apart.

    exclude_bias_and_norm=False puts every parameter in the first group (weight decay on
    biases and norm scales too, as plain `torch.optim.SGD(model.parameters(), ...)` does).
    """
    part_of = {id(p): (i, f) for i, (m, f) in enumerate((lr_scales or {}).items()) for p in m.parameters()}
    split: dict[tuple[bool, int, float], list] = {}
    for p in module.parameters():
        if p.requires_grad:
            part, scale = part_of.get(id(p), (-1, 1.0))
            split.setdefault((exclude_bias_and_norm and is_excluded(p), part, scale), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if excluded else weight_decay, "lars_exclude": excluded,
             "lr_scale": scale, "part": part} for (excluded, part, scale), ps in sorted(split.items(), key=lambda kv: kv[0])]


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) as used by BYOL.

    For each tensor not excluded: d = g + wd * w; r = eta * ||w|| / ||d|| (1 when either
    norm is 0); d <- r * d; then momentum v = m v + d and w <- w - lr v. The tensor's
    effective rate is lr * r (DeepMind's byol/utils/optimizers.py).

    clip_lr (LARC's clipping, solo-learn's `clip_lr: True`): r <- min(r / lr, 1), so the
    effective rate is min(eta * ||w|| / ||d||, lr): the adaptive rate never exceeds the
    scheduled one. solo-learn (solo/utils/lars.py) divides by ||g|| + wd ||w|| where this
    class divides by ||g + wd w||; with BYOL's weight decays (1e-5, 1.5e-6) the two differ
    by less than the decay itself.

    Excluded tensors (group option `lars_exclude`) get neither weight decay nor the trust
    ratio. Every group is updated with fused `torch._foreach_*` calls.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 1e-3, lars_exclude: bool = False, clip_lr: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust_coefficient <= 0:
            raise ValueError(f"invalid LARS settings: lr={lr}, momentum={momentum}, "
                             f"weight_decay={weight_decay}, trust_coefficient={trust_coefficient}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars_exclude=lars_exclude, clip_lr=clip_lr)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"] and not group["lars_exclude"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if not group["lars_exclude"]:
                w_norm = torch.stack(torch._foreach_norm(params))
                g_norm = torch.stack(torch._foreach_norm(grads))
                ratio = torch.where((w_norm > 0) & (g_norm > 0),
                                    group["trust_coefficient"] * w_norm / g_norm, torch.ones_like(w_norm))
                if group["clip_lr"]:
                    ratio = (ratio / group["lr"]).clamp_(max=1.0) if group["lr"] > 0 else torch.ones_like(ratio)
                grads = torch._foreach_mul(grads, list(ratio.unbind()))
            bufs = []
            for p, d in zip(params, grads):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            torch._foreach_add_(params, bufs, alpha=-group["lr"])
        return loss


def scaled_lr(base_lr: float, global_batch: int) -> float:
    """lr = base_lr x global_batch / 256 (paper, Section 3.3). global_batch counts every
    device and every accumulated micro-batch."""
    return base_lr * global_batch / 256


def build_optimizer(module: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9, trust_coefficient: float = 1e-3, clip_lr: bool = False,
                    exclude_bias_and_norm: bool = True,
                    lr_scales: dict[nn.Module, float] | None = None) -> torch.optim.Optimizer:
    """LARS, SGD, Adam or AdamW over `param_groups(module)`; clip_lr is LARS-only."""
    name = name.lower()
    groups = param_groups(module, weight_decay, exclude_bias_and_norm, lr_scales)
    for g in groups:
        g["lr"] = lr * g.pop("lr_scale")
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, trust_coefficient=trust_coefficient, clip_lr=clip_lr)
    fused = {"fused": True} if all(p.is_cuda for g in groups for p in g["params"]) else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **fused)
    if name in ("adam", "adamw"):
        if lr > 0.01:
            warnings.warn(f"learning rate {lr} with {name}: LARS-scale rates make Adam collapse "
                          "(byol-pytorch issues #39, #44); 3e-4 is usual", stacklevel=2)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(groups, lr=lr, **fused)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


class WarmupCosine:
    """Multiplier of the base rate: linear warm-up to 1, then 0.5 (1 + cos(pi t)) down to 0.

    The factor 0.5 matters: without it the rate jumps to twice the base after warm-up.
    A plain class (not a lambda) so that the scheduler state is saved.
    """

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps = max(0, int(warmup_steps))
        self.total_steps = max(1, int(total_steps))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * t))


class AfterStep(WarmupCosine):
    """WarmupCosine held at 0 until step `start` (the step count unchanged): a part of the
    network held still while the rest learns first, e.g. pretrained weights while new heads
    learn (linear probing, then fine-tuning: Kumar et al. 2022, arXiv 2202.10054)."""

    def __init__(self, warmup_steps: int, total_steps: int, start: int = 0):
        super().__init__(warmup_steps, total_steps)
        self.start = max(0, int(start))

    def __call__(self, step: int) -> float:
        return 0.0 if step < self.start else super().__call__(step)


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                    held_until: dict[int, int] | None = None):
    """WarmupCosine for every group; a group whose "part" (param_groups) is in `held_until`
    ({part: step}) is held at 0 until that step."""
    held_until = held_until or {}
    if not any(g.get("part") in held_until for g in optimizer.param_groups):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup_steps, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [AfterStep(warmup_steps, total_steps, held_until.get(g.get("part"), 0))
                                                         for g in optimizer.param_groups])
