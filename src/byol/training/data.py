"""The training data of a run plan: the loader, the kNN monitor's labeled bank and test set, and
the number of training images. `build_data` reads how the images are read off the plan
(reading), opens the source the facts surveyed (byol.data.sources.open_source), and puts a
loader over it: a ResumableLoader over a map-style data set (exact mid-epoch resume) or a
DataLoader over a self-splitting stream (shards). Nothing here decides."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from byol.config import to_dict
from byol.core.augment import TwoViewTransform
from byol.data.bands import Pixels
from byol.data.batch import already_batched, collate
from byol.data.image_sets import AugmentedImages, BatchIndices, MemoryImages
from byol.data.listing import DataError
from byol.data.loader import ResumableLoader, SeededItems, ShardedSampler
from byol.data.sources import Reading, Source, open_source
from byol.training.plan import Plan


@dataclass
class TrainingData:
    """What pretraining reads: the loader, the kNN monitor's labeled bank and test set (both or
    neither), the number of training images, and the uint8 images to keep on the training device
    (then the loader yields indices into them) or None."""
    loader: torch.utils.data.DataLoader
    bank: MemoryImages | None
    test: MemoryImages | None
    images: int
    resident: torch.Tensor | None = None
    identity: dict | None = None  # see data_identity: what a resumed run must find again
    grayscale: bool = False  # the data-aware decision (looks_grayscale) the run was built with


def build_data(plan: Plan) -> TrainingData:
    """The TrainingData of the plan: its source, opened as the facts surveyed it, read as the plan
    says, under one loader."""
    read = reading(plan)
    source = open_source(plan.facts.data, read)
    data = make_loader(plan, source, read.transform)
    data.grayscale = plan.grayscale
    return data


def reading(plan: Plan) -> Reading:
    """How the run's images are read (byol.data.sources.Reading): training images decoded to
    data.load_size (default data.image_size), or with large_images 'full' each view's crop taken
    from the whole image (its shorter side bounded by data.load_size; None: none) with the
    augmentation's crop settings; evaluation images to data.load_size, or with large_images 'full'
    image_size / eval_crop (ImageNet: 224 / 0.875 = 256, DeepMind's _decode_and_center_crop); the
    per-image two-view transform where data.augment_on is 'workers'; where the plan's crop_on is
    the device, whole photos and their boxes for the training device to cut; the input channels
    (data.channels, decided by the plan) and how each file's values are read (data.pixels and
    its keys)."""
    cfg = plan.cfg
    d = cfg.data
    full = d.large_images == "full"
    pixels = Pixels.of(to_dict(cfg)["data"])
    transform = TwoViewTransform(cfg.augment, cropped=full, pixels=pixels.kind) if d.augment_on == "workers" else None
    return Reading(train_size=d.load_size if full else d.load_size or d.image_size,
                   eval_size=round(d.image_size / d.eval_crop) if full else d.load_size or d.image_size,
                   crops=cfg.augment if full else None, transform=transform, batch_size=cfg.train.batch_size,
                   device_crops=plan.crop_on == "device", channels=d.channels, pixels=pixels)


def enough_images(path: str, n: int, global_batch: int) -> None:
    """A DataError unless the n training images (those that could be read) fill at least one
    batch of every process."""
    if n < global_batch:
        raise DataError(f"{path!r} has {n} usable images, fewer than one batch (train.batch_size = {global_batch})")


def make_loader(plan: Plan, source: Source, transform: TwoViewTransform | None = None) -> TrainingData:
    """The loader of the source's training images: in-memory images in whole-batch slices (on
    the training device when the plan keeps them there), or with `transform` (the reading's, for
    data.augment_on workers) augmented per image in the workers; everything else per item in
    DataLoader workers, collated into one Batch."""
    cfg = plan.cfg
    t, train = cfg.train, source.train
    enough_images(cfg.data.path, len(train), t.batch_size * plan.world_size)
    memory = isinstance(train, MemoryImages)
    resident = None
    if memory and transform is not None:  # data.augment_on workers: per image in the workers
        train, memory = AugmentedImages(train, transform), False
    if memory and plan.data_on_device:
        resident, train = train.images, BatchIndices(train)
    workers = 0 if memory else plan.workers
    # No DataLoader timeout: with one, PyTorch learns of a worker that died only from a SIGCHLD that
    # reaches the main thread (any other thread may take it) or after the whole timeout; without one it
    # checks its workers every 5 s (torch.utils.data._utils.MP_STATUS_CHECK_INTERVAL) and reports a dead one.
    if isinstance(train, torch.utils.data.IterableDataset):  # shards: the stream splits itself
        loader = torch.utils.data.DataLoader(
            train, batch_size=t.batch_size, drop_last=True, collate_fn=collate, num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available())
        return TrainingData(loader, source.bank, source.test, train.total, resident, source.identity)
    if not memory:  # read per item: each item's random draws seeded by its epoch and index
        train = SeededItems(train, t.seed)
    loader = ResumableLoader(
        train, batch_size=t.batch_size, sampler=ShardedSampler(len(train), seed=t.seed, keyed=not memory),
        collate_fn=already_batched if memory else collate, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available() and not memory)
    bank, test = (source.bank, source.test) if source.bank is not None and source.test is not None else (None, None)
    return TrainingData(loader, bank, test, len(train), resident, source.identity)
