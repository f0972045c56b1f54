"""Every rank its own augmentation stream, and every rank's random states in the checkpoint,
so that a resumed run draws exactly what the uninterrupted one would have."""
from __future__ import annotations

import random

import lightning as L
import numpy as np
import torch

from byol.data.loader import AUGMENT_STREAM, derived_seed
from byol.version import __version__


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
