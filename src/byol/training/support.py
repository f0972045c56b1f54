"""The machinery around the BYOL step that every training run needs, kept out of the method:
BYOLModule.configure_callbacks attaches these to any Lightning Trainer (byol's or a user's).

    RankRandomness    every rank its own augmentation stream; every rank's RNG states in the
                      checkpoint, so a resumed run draws exactly what the uninterrupted one would
    WallClock         seconds of each training segment (a resumed run has several)
    Throughput        images/s over a sliding window of steps
    TargetAgreement   at the end of a distributed run: are the EMA targets identical on all ranks?
    CompileOrEager    torch.compile, falling back to eager execution if compilation fails
"""
from __future__ import annotations

import collections
import random
import time
import warnings

import lightning as L
import numpy as np
import torch

from byol.data.loader import AUGMENT_STREAM, derived_seed
from byol.version import __version__

THROUGHPUT_WINDOW = 20  # steps


class RankRandomness(L.Callback):
    """Per-rank random streams and their checkpointing (checkpoint["byol"]: rng_*, world_size)."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_fit_start(self, trainer, pl_module):
        if trainer.world_size > 1 and trainer.ckpt_path is None:
            # every rank starts from the same seed (identical initial weights); its augmentations
            # must not repeat the other ranks' draws, so each rank's stream is reseeded here
            torch.manual_seed(derived_seed(self.seed, AUGMENT_STREAM, trainer.global_rank))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        """Under DDP every rank's states are gathered; only rank 0 writes the file."""
        np_state = np.random.get_state()
        cuda = pl_module.device.type == "cuda"
        checkpoint.setdefault("byol", {}).update({
            "version": __version__,
            "rng_torch": per_rank(pl_module, torch.get_rng_state()),
            "rng_cuda": per_rank(pl_module, torch.cuda.get_rng_state()) if cuda else [],
            "rng_python": random.getstate(),
            "rng_numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "world_size": trainer.world_size,
        })

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        extra = checkpoint.get("byol")
        if not extra or "rng_torch" not in extra:
            return
        rank, size = trainer.global_rank, trainer.world_size

        def mine(states) -> torch.Tensor:  # rank 0's when the number of ranks changed
            if isinstance(states, torch.Tensor):
                return states
            return states[rank] if len(states) == size else states[0]

        torch.set_rng_state(mine(extra["rng_torch"]))
        if extra["rng_cuda"] and pl_module.device.type == "cuda":
            torch.cuda.set_rng_state(mine(extra["rng_cuda"]))
        random.setstate(_tuples(extra["rng_python"]))
        n = extra["rng_numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))


def per_rank(pl_module, state: torch.Tensor) -> list[torch.Tensor]:
    if pl_module.trainer.world_size == 1:
        return [state]
    return list(pl_module.all_gather(state.to(pl_module.device)).cpu().unbind())


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class WallClock(L.Callback):
    """`segments`: seconds of the earlier training segments (from the checkpoint: each up to its
    last save); `seconds()`: of this one so far."""

    def __init__(self):
        self.segments: list[float] = []
        self._start = time.time()

    def seconds(self) -> float:
        return time.time() - self._start

    def on_fit_start(self, trainer, pl_module):
        self._start = time.time()

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint.setdefault("byol", {})["wall_segments"] = [*self.segments, self.seconds()]

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.segments = [float(s) for s in (checkpoint.get("byol") or {}).get("wall_segments", [])]


class Throughput(L.Callback):
    """Every log_every steps, train/images_per_sec over the last THROUGHPUT_WINDOW steps: a
    sliding window of step start times, so epoch ends (checkpoints, kNN) do not skew it."""

    def __init__(self, log_every: int):
        self.log_every = log_every
        self.starts: collections.deque = collections.deque(maxlen=THROUGHPUT_WINDOW + 1)

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.clear()  # the gap of an epoch's end is not a step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        t = self.starts
        if batch_idx % self.log_every == 0 and len(t) >= 2 and t[-1] > t[0]:
            ips = (len(t) - 1) * len(batch) * trainer.world_size / (t[-1] - t[0])
            pl_module.log("train/images_per_sec", ips, prog_bar=True, on_step=True, on_epoch=False,
                          batch_size=len(batch))


class TargetAgreement(L.Callback):
    """`identical`: after a distributed run, whether every rank holds the same EMA target
    (compared by per-tensor fingerprints); None for one process."""

    def __init__(self):
        self.identical: bool | None = None

    def on_train_end(self, trainer, pl_module):
        if trainer.world_size > 1:
            prints = pl_module.all_gather(fingerprint(pl_module.model.target))
            self.identical = bool((prints == prints[0]).all())
            if not self.identical:
                warnings.warn("the EMA target differs between ranks at the end of training", stacklevel=2)


@torch.no_grad()
def fingerprint(network: torch.nn.Module) -> torch.Tensor:
    """Per tensor: sum, sum of squares and a position-weighted sum (float64)."""
    rows = []
    for t in [*network.parameters(), *network.buffers()]:
        x = t.detach().double().flatten()
        position = torch.arange(1, len(x) + 1, device=x.device, dtype=x.dtype)
        rows.append(torch.stack([x.sum(), x.square().sum(), (x * position).sum()]))
    return torch.stack(rows)


class CompileOrEager:
    """`fn` through torch.compile when `enabled`; if compiling fails, one warning and `fn`
    itself from then on."""

    def __init__(self, fn, enabled: bool):
        self.fn = fn
        self.compiled = None if enabled else False  # None: not tried yet

    def __call__(self, *args):
        if self.compiled is None:
            try:
                self.compiled = torch.compile(self.fn)
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                              "training continues without compilation", stacklevel=2)
                self.compiled = False
        return self.compiled(*args) if self.compiled else self.fn(*args)
