"""Each kind of training data (a folder or .tar, video frames, tar shards, a named data set): what
is known of it before anything is decoded (`survey`), and the data sets a run trains on
(`open_source`), from two plain values: what to read (DataSpec, as the config says) and how
to read it (Reading, as the run's plan decided). The training layer calls each once.

A folder is listed and split once, by `survey`; `open_source` builds on that listing.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field

import torch

from byol.core.augment import AugmentConfig, TwoViewTransform
from byol.data.image_sets import (
    GRAYSCALE_SAMPLE,
    MemoryImages,
    StreamImages,
    VideoFramePairs,
    decode_to_memory,
    looks_grayscale,
)
from byol.data.listing import DECODE_ERRORS, DataError, ImageList, list_images
from byol.data.splits import (
    first_per_class,
    match_classes,
    random_subset,
    split_held_out,
)

MEMORY_LIMIT_IMAGES = 300_000  # below it (and not large_images full), a folder's images are decoded into memory
SIZE_SAMPLE = 64  # images whose headers are read to find the typical size
GRAYSCALE_SIDE = 16  # px: the grayscale sample is decoded this small (equal channels stay equal at any size)
NAMED_SIZES = {"cifar10": 32, "cifar100": 32, "stl10": 96, "mnist": 28, "emnist": 28}
BANK_IMAGES = 10_000  # streamed data: the kNN monitor's bank is this many training images, decoded once


@dataclass(frozen=True)
class DataSpec:
    """What to read: the data keys of a run's config (data.*), and the seed and whether the kNN
    monitor runs (it holds images out of training)."""
    dataset: str
    path: str
    split: str | None = None
    val_path: str | None = None
    val_fraction: float = 0.1
    channels: int = 3
    limit: int | None = None
    limit_per_class: int | None = None
    in_memory: bool | None = None
    large_images: str = "resize"
    decoder: str = "auto"
    max_frame_gap: int = 1
    seed: int = 0
    monitor: bool = True


@dataclass(frozen=True)
class DataFacts:
    """The training data as surveyed before anything is built: how many images a run trains on,
    the typical shorter side, whether they are grayscale, a cache's marker; for a folder its
    images listed and split (kept for open_source, left out of what is printed)."""
    source: str  # data.dataset
    path: str
    train_images: int | None  # about how many images the run trains on; None where it cannot be told
    typical_side: int | None  # the median shorter side; None where it cannot be told cheaply
    grayscale: bool  # the data-aware decision's input: one channel, or RGB whose channels are equal
    grayscale_from: str  # how it was told
    in_memory: bool | None  # a folder's images decoded into memory (None: not a folder)
    labeled: bool
    cache: dict | None = None  # byol cache's marker, where data.path is a resized copy
    left_out: int = 0  # image files listed and left out (not regular files, stray top-level images)
    spec: DataSpec | None = None  # what was surveyed
    images: ImageList | None = field(default=None, repr=False, compare=False)  # a folder's training images
    held: ImageList | None = field(default=None, repr=False, compare=False)  # its held-out images


def survey(spec: DataSpec) -> DataFacts:
    """The DataFacts of `spec`'s data, by kind."""
    if not spec.path:
        raise DataError("data.path is not set: give the folder or .tar of training images")
    if spec.dataset == "folder":
        return survey_folder(spec)
    if spec.dataset == "shards":
        from byol.data.shards import read_index

        index = read_index(spec.path)
        return DataFacts("shards", spec.path, sum(s["count"] for s in index["shards"]), None, spec.channels == 1,
                         "data.channels", None, bool(index.get("classes")), spec=spec)
    if spec.dataset == "video":
        frames = VideoFramePairs(spec.path, None, spec.max_frame_gap, spec.channels).frames
        return DataFacts("video", spec.path, len(frames), None, spec.channels == 1, "data.channels", None, False,
                         spec=spec)
    train = named_training_set(spec)
    return DataFacts(spec.dataset, spec.path, len(train), NAMED_SIZES.get(spec.dataset.split("-")[0]),
                     looks_grayscale(train, spec.channels), "its pixels", None, bool((train.labels >= 0).any()),
                     spec=spec)


def survey_folder(spec: DataSpec) -> DataFacts:
    """A folder or .tar: listed once, split once (folder_split), the headers of up to SIZE_SAMPLE
    images for the typical side, and for images held in memory the pixels of up to
    GRAYSCALE_SAMPLE training images (decoded at GRAYSCALE_SIDE) for grayscale; streamed images
    are grayscale when data.channels is 1."""
    from byol.data.cache import read_marker

    listed = list_images(spec.path)
    images, held, in_memory = folder_split(spec, listed)
    if spec.channels == 1:
        grayscale, told = True, "data.channels"
    elif in_memory:
        sample = decode_to_memory(images, GRAYSCALE_SIDE, spec.channels, limit=GRAYSCALE_SAMPLE, decoder=spec.decoder)
        grayscale, told = looks_grayscale(sample, spec.channels), "the pixels of a sample"
    else:
        grayscale, told = False, "streamed images are taken to be in colour"
    return DataFacts("folder", spec.path, len(images), typical_side(listed), grayscale, told, in_memory,
                     listed.labeled, read_marker(spec.path), len(listed.left_out), spec, images, held)


def folder_split(spec: DataSpec, listed: ImageList) -> tuple[ImageList, ImageList | None, bool]:
    """A folder's training images (data.limit_per_class, data.limit, less those held out), the
    held-out ones (data.val_fraction of each class, when the kNN monitor runs without
    data.val_path) or None, and whether they are kept in memory (below MEMORY_LIMIT_IMAGES)."""
    images, held = listed, None
    if spec.limit_per_class:
        images = first_per_class(images, spec.limit_per_class)
    if spec.limit:
        images = random_subset(images, spec.limit, spec.seed)
    in_memory = spec.in_memory if spec.in_memory is not None else (len(images) <= MEMORY_LIMIT_IMAGES
                                                                   and spec.large_images != "full")
    if spec.monitor and images.labeled and not spec.val_path and spec.val_fraction > 0:
        # held out of training too; copies looked for where the images are read whole anyway
        images, held = split_held_out(images, spec.val_fraction, spec.seed, find_copies=in_memory)
    return images, held, in_memory


def typical_side(listed: ImageList) -> int | None:
    """The median shorter side of up to SIZE_SAMPLE of a folder's images (their headers); None
    for an archive or where none can be read."""
    if not os.path.isdir(listed.root):
        return None
    from PIL import Image

    sides = []
    for item in random_subset(listed, SIZE_SAMPLE, 0).items:
        try:
            with Image.open(os.path.join(listed.root, item)) as im:
                sides.append(min(im.size))
        except DECODE_ERRORS:
            continue  # unreadable or a decompression bomb: said (and skipped) when the images are decoded
    return sorted(sides)[len(sides) // 2] if sides else None


def named_training_set(spec: DataSpec) -> MemoryImages:
    """A named data set's training images as a run uses them (data.split, data.limit,
    data.channels), read once per process (named_set)."""
    split = spec.split or ("train+unlabeled" if spec.dataset == "stl10" else "train")
    train = named_set(spec.dataset, spec.path, split, spec.channels)
    if spec.limit and spec.limit < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(spec.seed))
        train = train.subset(order[:spec.limit].sort().values)
    return train


@functools.lru_cache(maxsize=4)
def named_set(name: str, path: str, split: str, channels: int) -> MemoryImages:
    """A named data set's split at `channels`, read from its files once per process: the survey
    counts it, the run then trains on the same images."""
    from byol.data.datasets import load_dataset, match_channels

    return match_channels(load_dataset(name, path, split), channels)


# -- opening a source ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """How the training images are read, as the run's plan decided it: the side they are decoded
    to (with large_images 'full', the bound on the shorter side of the whole image the crops are
    drawn from; None: none), the side of evaluation images, the augmentation settings whose
    crops the data workers take from whole images (large_images 'full') or None, the per-image
    two-view transform of data.augment_on 'workers' or None, the batch (shards split it), and
    whether the workers pass whole photos with their crop boxes for the training device to cut
    (device_crops) rather than the crops themselves."""
    train_size: int | None
    eval_size: int
    crops: AugmentConfig | None = None
    transform: TwoViewTransform | None = None
    batch_size: int = 1
    device_crops: bool = False


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


def open_source(facts: DataFacts, reading: Reading) -> Source:
    """The Source of the data `facts` surveyed (facts.spec), read as `reading` says."""
    spec = facts.spec
    opener = {"folder": open_folder, "video": open_video, "shards": open_shards}.get(spec.dataset, open_named)
    return opener(spec, facts, reading)


def open_folder(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """A folder or .tar of images (class sub-folders: labels), as the survey listed and split it:
    in memory or streamed; held out for the kNN monitor: data.val_path, or data.val_fraction of
    each class (then never trained on)."""
    images, held = facts.images, facts.held
    monitor = spec.monitor and images.labeled
    bank = test = None
    if monitor and spec.val_path:
        test = val_images(spec, reading)
    elif held is not None:
        test = decode_to_memory(held, reading.eval_size, spec.channels, decoder=spec.decoder)
    if facts.in_memory:
        train = decode_to_memory(images, reading.train_size, spec.channels, decoder=spec.decoder)
        bank = train if monitor else None
    else:
        train = StreamImages(images, reading.train_size, spec.channels, spec.large_images, reading.transform,
                             reading.crops, spec.decoder, reading.device_crops)
        if monitor:
            bank = decode_to_memory(random_subset(images, BANK_IMAGES, spec.seed), reading.eval_size, spec.channels,
                                    decoder=spec.decoder)
    if bank is not None and test is not None and spec.val_path:
        test = match_classes(test, bank.classes, spec.val_path)
    return Source(train, bank, test, data_identity(images.items))


def open_video(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """Pairs of nearby frames of the videos in data.path (no kNN monitor)."""
    frames = VideoFramePairs(spec.path, reading.train_size, spec.max_frame_gap, spec.channels, spec.large_images,
                             reading.transform)
    return Source(frames, None, None, data_identity([os.path.relpath(f, spec.path) for f in frames.frames]))


def open_shards(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """WebDataset-style tar shards, streamed; the kNN bank is the first BANK_IMAGES images of the stream."""
    from byol.data.shards import ShardStream

    train = ShardStream(spec.path, reading.train_size, spec.channels, spec.large_images, reading.transform, spec.seed,
                        reading.batch_size, crops=reading.crops, eval_size=reading.eval_size, decoder=spec.decoder,
                        device_crops=reading.device_crops)
    bank = test = None
    if spec.monitor and spec.val_path:
        bank = train.head(BANK_IMAGES)
        test = val_images(spec, reading)
        test = match_classes(test, bank.classes, spec.val_path) if bank.classes else test
    return Source(train, bank, test, data_identity(train.shards, count=train.total))


def open_named(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """A standard data set (byol.data.datasets), in memory, as the survey read it; its test split
    is the held-out set."""
    from byol.data.datasets import load_dataset, match_channels

    train = named_training_set(spec)
    bank = test = None
    if spec.monitor:
        test = match_channels(load_dataset(spec.dataset, spec.val_path or spec.path, "test"), spec.channels)
        labeled = train.labels >= 0
        bank = train if labeled.all() else train.subset(labeled)
    return Source(train, bank, test, data_identity(images=train.images, labels=train.labels))


def val_images(spec: DataSpec, reading: Reading) -> MemoryImages:
    """The labeled images of data.val_path, decoded at the evaluation size, for the kNN monitor."""
    test = decode_to_memory(list_images(spec.val_path), reading.eval_size, spec.channels)
    if not test.classes:
        raise DataError(f"data.val_path {spec.val_path!r} has no class sub-folders; the kNN monitor needs labels")
    return test
