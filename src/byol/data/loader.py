"""Which images each step sees: one shuffled order per epoch, split across ranks, resumable.

    sampler = ShardedSampler(len(dataset), seed=0)          # rank and world size: torch.distributed
    loader = ResumableLoader(dataset, batch_size=256, sampler=sampler, drop_last=True)

The order of epoch e is a permutation drawn from (seed, e) alone, so it does not depend on
the global random state, on the number of workers, or on where a run was interrupted. With
W processes, rank r takes every W-th image of it (r, r+W, ...): one W-process run with batch
B per rank sees the same global batches as a one-process run with batch W*B.

`ResumableLoader` is a DataLoader that Lightning saves in checkpoints (state_dict): a run
killed mid-epoch and resumed skips the batches it had already trained on, and continues
with exactly the batches the uninterrupted run would have seen.
"""
from __future__ import annotations

import torch


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside torch.distributed."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


AUGMENT_STREAM = 1_000_000  # derived_seed key of the augmentation draws (epochs never reach it)


def derived_seed(seed: int, *keys: int) -> int:
    """The seed of one random stream of a run, from train.seed and integer keys (epoch, rank,
    stream): seed * 100_003, then each key folded in as s * 1_009 + key. Every per-epoch or
    per-rank seed of a run comes from here."""
    s = 0
    for key in keys:
        s = s * 1_009 + key
    return seed * 100_003 + s


ITEM_STREAM = 1_000_001  # derived_seed key of the draws made while reading one item (SeededItems)


class ShardedSampler(torch.utils.data.Sampler):
    """The images' order (see the module docstring). keyed: yields (epoch, index) keys for
    SeededItems instead of bare indices."""

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, keyed: bool = False):
        self.n, self.seed, self.shuffle, self.keyed = n, seed, shuffle, keyed
        self.epoch = 0
        self.skip = 0  # images of this rank's share to skip once (resuming mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // world()[1]

    def __iter__(self):
        rank, size = world()
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(derived_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(self.n)
        mine = order[: len(self) * size][rank::size]  # equal shares: every rank runs as many steps
        skip, self.skip = self.skip, 0
        if self.keyed:
            yield from ((self.epoch, i) for i in mine[skip:].tolist())
        else:
            yield from mine[skip:].tolist()


class SeededItems(torch.utils.data.Dataset):
    """A map-style data set whose items draw random numbers as they are read (crop boxes and
    random crops in the data workers, per-image augmentations), read by the (epoch, index) keys
    of a keyed ShardedSampler: each item's draws come from torch's generator seeded by (seed,
    epoch, index) alone (derived_seed), so an item is the same whichever worker reads it, however
    many workers there are, and wherever a run was resumed. Its other attributes are the
    data set's."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, epoch, i, ITEM_STREAM))
            return self.dataset[i]

    def __getattr__(self, name: str):
        if name in ("dataset", "seed"):  # not set yet (while unpickling in a worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader over a ShardedSampler whose position Lightning checkpoints.

    `mark(epoch, batches_done)` is called by the checkpoint callback just before it saves;
    `state_dict` returns that position and `load_state_dict` makes the next iteration start
    after it.
    """

    def __init__(self, dataset, batch_size: int, sampler: ShardedSampler, **kw):
        # Its own generator: creating an iterator draws the workers' base seed from it, and
        # must not draw from the global RNG that the augmentations use (a resumed run
        # creates one more iterator than the uninterrupted run did).
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                         generator=torch.Generator(), **kw)
        self.position = {"epoch": 0, "batches_done": 0}

    def __iter__(self):
        rank = world()[0]
        self.generator.manual_seed(derived_seed(self.sampler.seed, self.sampler.epoch, rank))
        return super().__iter__()

    def mark(self, epoch: int, batches_done: int) -> None:
        self.position = {"epoch": epoch, "batches_done": batches_done}

    def state_dict(self) -> dict:
        return dict(self.position)

    def load_state_dict(self, state: dict) -> None:
        epoch, done = int(state["epoch"]), int(state["batches_done"])
        if done >= len(self):  # saved at the end of the epoch: the next one starts afresh
            self.sampler.set_epoch(epoch + 1)
        else:
            self.sampler.set_epoch(epoch)
            self.sampler.skip = done * self.batch_size
