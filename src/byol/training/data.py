"""The training data of a run plan: the loader, the kNN monitor's labeled bank and test set, and
the number of training images, built from the plan's Config and the facts it was decided on
(a folder's images are listed and split once, in byol.training.facts). Nothing here decides:
every source (folders and archives, named data sets, shards, video frames) returns a Source,
and ends in one of two loaders: a ResumableLoader over a map-style data set (exact mid-epoch
resume) or a DataLoader over a self-splitting stream (shards)."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

from byol.config import Config
from byol.core.augment import TwoViewTransform
from byol.data.batch import already_batched, collate
from byol.data.image_sets import (
    AugmentedImages,
    BatchIndices,
    MemoryImages,
    StreamImages,
    VideoFramePairs,
    decode_to_memory,
)
from byol.data.listing import DataError, list_images
from byol.data.loader import ResumableLoader, ShardedSampler
from byol.data.splits import match_classes, random_subset
from byol.training.facts import DataFacts, named_training_set
from byol.training.plan import Plan, enough_images

WORKER_TIMEOUT_S = 600  # a data worker silent this long is reported, not waited on forever


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


@dataclass(frozen=True)
class Source:
    """What a source gives: the training images (in memory, streamed, or pairs of frames), the
    kNN monitor's labeled bank and held-out images (or None), and the data's identity."""
    train: torch.utils.data.Dataset
    bank: MemoryImages | None
    test: MemoryImages | None
    identity: dict


def data_identity(names: list[str] | None = None, images: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None, count: int | None = None) -> dict:
    """The training data's identity, kept in each checkpoint: how many images and a fingerprint
    of them: of their file names (a folder, a video, shards: renaming, adding or removing a file
    changes it), or of the decoded images (a standard data set: every 64th image's pixels and
    all labels)."""
    h = hashlib.sha256()
    if names is not None:
        h.update("\n".join(names).encode())
        count = len(names) if count is None else count
    if images is not None:
        h.update(images[::64].contiguous().numpy().tobytes())
        count = len(images) if count is None else count
    if labels is not None:
        h.update(labels.contiguous().numpy().tobytes())
    return {"images": count, "fingerprint": h.hexdigest()[:16]}


def build_data(plan: Plan) -> TrainingData:
    """The TrainingData of the plan's cfg.data (source, subset, memory or stream) and cfg.train
    (batch, seed)."""
    cfg = plan.cfg
    sources = {"folder": lambda: folder_source(cfg, plan.facts.data), "video": lambda: video_source(cfg),
               "shards": lambda: shard_source(cfg)}
    source = sources.get(cfg.data.dataset, lambda: named_source(cfg))()
    data = make_loader(plan, source)
    data.grayscale = plan.grayscale
    return data


def folder_source(cfg: Config, facts: DataFacts) -> Source:
    """A folder or .tar of images (class sub-folders: labels), as the facts listed and split it:
    in memory or streamed; held out for the kNN monitor: data.val_path, or data.val_fraction of
    each class (then never trained on)."""
    d, t = cfg.data, cfg.train
    images, held = facts.images, facts.held
    monitor = t.knn_every > 0 and images.labeled
    bank = test = None
    if monitor and d.val_path:
        test = val_images(cfg)
    elif held is not None:
        test = decode_to_memory(held, eval_size(cfg), d.channels, decoder=d.jpeg_decoder)
    if facts.in_memory:
        train = decode_to_memory(images, train_size(cfg), d.channels, decoder=d.jpeg_decoder)
        bank = train if monitor else None
    else:
        train = StreamImages(images, train_size(cfg), d.channels, d.large_images, worker_transform(cfg),
                             full_crops(cfg), d.jpeg_decoder)
        if monitor:
            bank = decode_to_memory(random_subset(images, 10_000, t.seed), eval_size(cfg), d.channels,
                                    decoder=d.jpeg_decoder)
    if bank is not None and test is not None and d.val_path:
        test = match_classes(test, bank.classes, d.val_path)
    return Source(train, bank, test, data_identity(images.items))


def video_source(cfg: Config) -> Source:
    """Pairs of nearby frames of the videos in data.path (no kNN monitor)."""
    d = cfg.data
    frames = VideoFramePairs(d.path, d.load_size or d.image_size, d.max_frame_gap, d.channels,
                             d.large_images, worker_transform(cfg), cfg.train.seed)
    return Source(frames, None, None, data_identity([os.path.relpath(f, d.path) for f in frames.frames]))


def shard_source(cfg: Config) -> Source:
    """WebDataset-style tar shards, streamed; the kNN bank is the first 10,000 images of the stream."""
    from byol.data.shards import ShardStream

    d, t = cfg.data, cfg.train
    train = ShardStream(d.path, train_size(cfg), d.channels, d.large_images, worker_transform(cfg), t.seed,
                        t.batch_size, crops=full_crops(cfg), eval_size=eval_size(cfg), decoder=d.jpeg_decoder)
    bank = test = None
    if t.knn_every > 0 and d.val_path:
        bank = train.head(10_000)
        test = val_images(cfg)
        test = match_classes(test, bank.classes, d.val_path) if bank.classes else test
    return Source(train, bank, test, data_identity(train.shards, count=train.total))


def named_source(cfg: Config) -> Source:
    """A standard data set (byol.data.datasets), in memory, as the facts read it; its test split
    is the held-out set."""
    from byol.data.datasets import load_dataset, match_channels

    d, t = cfg.data, cfg.train
    train = named_training_set(cfg)
    bank = test = None
    if t.knn_every > 0:
        test = match_channels(load_dataset(d.dataset, d.val_path or d.path, "test"), d.channels)
        labeled = train.labels >= 0
        bank = train if labeled.all() else train.subset(labeled)
    return Source(train, bank, test, data_identity(images=train.images, labels=train.labels))


def val_images(cfg: Config) -> MemoryImages:
    """The labeled images of data.val_path, decoded at the evaluation size, for the kNN monitor."""
    d = cfg.data
    test = decode_to_memory(list_images(d.val_path), eval_size(cfg), d.channels)
    if not test.classes:
        raise DataError(f"data.val_path {d.val_path!r} has no class sub-folders; the kNN monitor needs labels")
    return test


def train_size(cfg: Config) -> int | None:
    """The side training images are decoded to; with large_images 'full', the bound on the
    shorter side of the whole image the crops are drawn from (None: none)."""
    d = cfg.data
    return d.load_size if d.large_images == "full" else d.load_size or d.image_size


def eval_size(cfg: Config) -> int:
    """The side evaluation images are decoded to (shorter side, then the centre square, of which
    the kNN monitor takes the centre data.eval_crop): data.load_size, or with large_images
    'full' image_size / eval_crop (ImageNet: 224 / 0.875 = 256, DeepMind's _decode_and_center_crop)."""
    d = cfg.data
    if d.large_images == "full":
        return round(d.image_size / d.eval_crop)
    return d.load_size or d.image_size


def full_crops(cfg: Config):
    """The augmentation settings whose crops the data workers take from whole images (large_images
    'full'), else None."""
    return cfg.augment if cfg.data.large_images == "full" else None


def worker_transform(cfg: Config) -> TwoViewTransform | None:
    """The per-image augmentation when data.augment_on is 'workers', else None (the device augments)."""
    if cfg.data.augment_on != "workers":
        return None
    return TwoViewTransform(cfg.augment, cropped=cfg.data.large_images == "full")


def make_loader(plan: Plan, source: Source) -> TrainingData:
    """The loader of the source's training images: in-memory images in whole-batch slices (on
    the training device when the plan keeps them there), everything else per item in
    DataLoader workers, collated into one Batch."""
    cfg = plan.cfg
    t, train = cfg.train, source.train
    enough_images(cfg.data.path, len(train), t.batch_size * plan.world_size)
    memory = isinstance(train, MemoryImages)
    resident = None
    if memory and cfg.data.augment_on == "workers":  # per image in the workers, as the setting says
        train, memory = AugmentedImages(train, worker_transform(cfg)), False
    if memory and plan.data_on_device:
        resident, train = train.images, BatchIndices(train)
    workers = 0 if memory else plan.workers
    if isinstance(train, torch.utils.data.IterableDataset):  # shards: the stream splits itself
        loader = torch.utils.data.DataLoader(
            train, batch_size=t.batch_size, drop_last=True, collate_fn=collate, num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(), timeout=WORKER_TIMEOUT_S if workers > 0 else 0)
        return TrainingData(loader, source.bank, source.test, train.total, resident, source.identity)
    loader = ResumableLoader(
        train, batch_size=t.batch_size, sampler=ShardedSampler(len(train), seed=t.seed),
        collate_fn=already_batched if memory else collate, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available() and not memory,
        timeout=WORKER_TIMEOUT_S if workers > 0 else 0,
    )
    bank, test = (source.bank, source.test) if source.bank is not None and source.test is not None else (None, None)
    return TrainingData(loader, bank, test, len(train), resident, source.identity)
