"""Each kind of training data (a folder or .tar, video frames, tar shards, a named data set): what
is known of it before anything is decoded (`survey`), and the data sets a run trains on
(`open_source`), from two plain values: what to read (DataSpec, as the config says) and how
to read it (Reading, as the run's plan decided). The training layer calls each once.

A folder is listed and split once, by `survey`; `open_source` builds on that listing.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

import torch

from byol.core.augment import AugmentConfig, TwoViewTransform
from byol.data.bands import BandStats, Pixels, band_shape, band_stats, is_picture
from byol.data.image_sets import (
    ListedPairs,
    MemoryImages,
    StreamImages,
    VideoFramePairs,
    decode_to_memory,
)
from byol.data.listing import DECODE_ERRORS, DataError, ImageList, list_images, read_all_bytes
from byol.data.splits import (
    first_per_class,
    match_classes,
    random_subset,
    split_held_out,
)

MEMORY_LIMIT_IMAGES = 300_000  # below it (and not large_images full), a folder's images are decoded into memory
SIZE_SAMPLE = 64  # images whose headers are read to find the typical size
GRAYSCALE_SIDE = 16  # px: the grayscale sample is decoded this small (equal channels stay equal at any size)
GRAYSCALE_SAMPLE = 4096  # images whose pixels decide whether the data is grayscale
NAMED_SIZES = {"cifar10": 32, "cifar100": 32, "stl10": 96, "mnist": 28, "emnist": 28}
BANK_IMAGES = 10_000  # streamed data: the kNN monitor's bank is this many training images, decoded once


def looks_grayscale(images: torch.Tensor) -> bool:
    """Grayscale: uint8 images (N, C, H, W) of one channel, or of three equal ones (the first
    GRAYSCALE_SAMPLE images are checked)."""
    if images.shape[1] == 1:
        return True
    x = images[:GRAYSCALE_SAMPLE]
    return images.shape[1] == 3 and bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())


@dataclass(frozen=True)
class DataSpec:
    """What to read: the data keys of a run's config (data.*), and the seed and whether the kNN
    monitor runs (it holds images out of training)."""
    dataset: str
    path: str
    split: str | None = None
    val_path: str | None = None
    val_fraction: float = 0.1
    channels: int | str = 3  # or "auto"
    limit: int | None = None
    limit_per_class: int | None = None
    in_memory: bool | None = None
    large_images: str = "resize"
    decoder: str = "auto"
    max_frame_gap: int = 1
    seed: int = 0
    monitor: bool = True
    pixels: str = "auto"  # data.pixels: 8-bit, full or auto
    bands: tuple[int, ...] | None = None
    layout: str = "auto"
    window: tuple[float, float] | None = None
    clip_percentiles: tuple[float, float] | None = None
    stats_images: int = 512
    pairs_file: str | None = None

    @property
    def picture_channels(self) -> int:
        """The channels 8-bit pictures are read with: data.channels, 3 (RGB) for auto."""
        return 3 if self.channels == "auto" else self.channels

    def full_pixels(self) -> Pixels:
        """How full-precision files are read, before the plan's clip."""
        return Pixels("full", self.bands, self.layout, self.window)


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
    pixels: str = "8-bit"  # "8-bit" pictures or "full"-precision values (data.pixels, or what the files are)
    pixels_from: str = "data.pixels"  # how it was told
    channels: int = 3  # the bands each image has as read (after data.bands); 8-bit: data.channels or 3
    band_stats: BandStats | None = None  # full: per-band statistics of a sample of the training images
    spec: DataSpec | None = None  # what was surveyed
    images: ImageList | None = field(default=None, repr=False, compare=False)  # a folder's training images
    held: ImageList | None = field(default=None, repr=False, compare=False)  # its held-out images


def survey(spec: DataSpec) -> DataFacts:
    """The DataFacts of `spec`'s data, by kind; for full-precision data also its band count and
    per-band statistics (survey_bands)."""
    if not spec.path:
        raise DataError("data.path is not set: give the folder or .tar of training images")
    if spec.dataset == "folder":
        return survey_folder(spec)
    if spec.dataset == "shards":
        from byol.data.shards import read_index, sample_bytes

        index = read_index(spec.path)
        facts = DataFacts("shards", spec.path, sum(s["count"] for s in index["shards"]), None,
                          spec.picture_channels == 1, "data.channels", None, bool(index.get("classes")),
                          channels=spec.picture_channels, spec=spec)
        return survey_bands(facts, functools.partial(sample_bytes, spec.path))
    if spec.dataset in ("video", "pairs"):
        pairs = paired_images(spec, Reading(None, 0))
        count, frames = len(pairs), pairs.frames
        facts = DataFacts(spec.dataset, spec.path, count, None, spec.picture_channels == 1, "data.channels", None,
                          False, channels=spec.picture_channels, spec=spec)
        rng = np.random.default_rng(spec.seed)
        return survey_bands(facts, lambda n: [(f, f) for f in rng.permutation(frames)[:n].tolist()])
    if spec.pixels == "full":
        raise DataError(f"data.pixels full: {spec.dataset} is a set of 8-bit pictures; read it with data.pixels auto")
    train = named_training_set(spec)
    return DataFacts(spec.dataset, spec.path, len(train), NAMED_SIZES.get(spec.dataset.split("-")[0]),
                     looks_grayscale(train.images), "its pixels", None,
                     bool((train.labels >= 0).any()), channels=spec.picture_channels, spec=spec)


PIXEL_SAMPLE = 64  # files whose first bytes tell whether a set holds 8-bit pictures (data.pixels auto)
BAND_CHECK = 20_000  # files whose headers are checked for one band count (all, up to this many)


def survey_bands(facts: DataFacts, files, everything=None) -> DataFacts:
    """The facts with data.pixels decided from the files (8-bit pictures, or full precision) and,
    for full precision, every checked file's band count (one for the set, or one DataError
    naming a file of each), the typical side, and the per-band statistics of up to
    data.stats_images training images. files(n): up to n (name, source) pairs, a random sample
    where the set allows; everything: a function giving all (name, source) pairs to check, or
    None (the sample is checked)."""
    spec = facts.spec
    sample = files(max(PIXEL_SAMPLE, spec.stats_images))
    if not sample:
        return facts
    pixels, told = spec.pixels, "data.pixels"
    if pixels == "auto":
        picture = {name: is_picture(source) for name, source in sample[:PIXEL_SAMPLE]}
        if len(set(picture.values())) > 1:
            one = next(n for n, p in picture.items() if p)
            other = next(n for n, p in picture.items() if not p)
            raise DataError(f"{spec.path!r} mixes 8-bit pictures ({one!r}) with full-precision images ({other!r}); "
                            "give one kind, or set data.pixels 8-bit or full to read all as one")
        pixels, told = ("8-bit" if all(picture.values()) else "full"), f"the first bytes of {len(picture)} files"
    if pixels == "8-bit":
        return dataclasses.replace(facts, pixels="8-bit", pixels_from=told)
    shapes = {}
    for name, source in (everything() if everything is not None else sample)[:BAND_CHECK]:
        try:
            shapes[name] = band_shape(source, spec.layout)
        except DECODE_ERRORS:
            continue  # unreadable: said and skipped when it is read
    if not shapes:
        raise DataError(f"{spec.path!r}: none of {len(sample)} files could be read as full-precision images")
    counts = {}
    for name, shape in shapes.items():
        counts.setdefault(shape[0], name)
    if len(counts) > 1:
        (a, first), (b, second) = list(counts.items())[:2]
        raise DataError(f"{spec.path!r} mixes images of {a} bands ({first!r}) and {b} bands ({second!r}): give one "
                        "set of one band count, or pick the same bands from each with data.bands")
    bands = next(iter(counts))
    if spec.bands is not None and max(spec.bands) >= bands:
        raise DataError(f"data.bands {list(spec.bands)} names band {max(spec.bands)}, but the images of "
                        f"{spec.path!r} have {bands} bands (0 to {bands - 1})")
    sides = sorted(min(shape[1:]) for shape in shapes.values())
    reading = spec.full_pixels()

    def arrays():
        for name, source in sample[:spec.stats_images]:
            try:
                yield reading.read(source)
            except DECODE_ERRORS:
                continue

    stats = band_stats(arrays(), spec.clip_percentiles, spec.seed)
    channels = len(spec.bands) if spec.bands is not None else bands
    return dataclasses.replace(facts, pixels="full", pixels_from=told, channels=channels, band_stats=stats,
                               typical_side=facts.typical_side or sides[len(sides) // 2],
                               grayscale=channels == 1, grayscale_from="its band count")


def survey_folder(spec: DataSpec) -> DataFacts:
    """A folder or .tar: listed once, split once (folder_split), the headers of up to SIZE_SAMPLE
    images for the typical side, and for images held in memory the pixels of up to
    GRAYSCALE_SAMPLE training images (decoded at GRAYSCALE_SIDE) for grayscale; streamed images
    are grayscale when data.channels is 1."""
    from byol.data.cache import read_marker

    listed = list_images(spec.path)
    images, held, in_memory = folder_split(spec, listed)
    facts = DataFacts("folder", spec.path, len(images), None, spec.picture_channels == 1, "data.channels",
                      in_memory, listed.labeled, read_marker(spec.path), len(listed.left_out),
                      channels=spec.picture_channels, spec=spec, images=images, held=held)
    blobs = (lambda items: zip(items.items, read_all_bytes(items))) if not os.path.isdir(listed.root) else \
        (lambda items: ((item, os.path.join(items.root, item)) for item in items.items))
    facts = survey_bands(facts, lambda n: list(blobs(random_subset(images, n, spec.seed))),
                         (lambda: list(blobs(images))) if len(images) <= BAND_CHECK else None)
    if facts.pixels == "full":
        return facts
    if spec.picture_channels == 1:
        grayscale, told = True, "data.channels"
    elif in_memory:
        sample = decode_to_memory(images, GRAYSCALE_SIDE, spec.picture_channels, limit=GRAYSCALE_SAMPLE,
                                  decoder=spec.decoder)
        grayscale, told = looks_grayscale(sample.images), "the pixels of a sample"
    else:
        grayscale, told = False, "streamed images are taken to be in colour"
    return dataclasses.replace(facts, typical_side=typical_side(listed), grayscale=grayscale, grayscale_from=told)


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
    train = named_set(spec.dataset, spec.path, split, spec.picture_channels)
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
    (device_crops) rather than the crops themselves; the channels and how each file's values are
    read (pixels)."""
    train_size: int | None
    eval_size: int
    crops: AugmentConfig | None = None
    transform: TwoViewTransform | None = None
    batch_size: int = 1
    device_crops: bool = False
    channels: int = 3  # the network's input bands, as the plan decided data.channels
    pixels: Pixels = field(default_factory=Pixels)  # 8-bit pictures, or full precision with its bands and clip


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
    opener = {"folder": open_folder, "video": open_video, "pairs": open_video, "shards": open_shards}.get(
        spec.dataset, open_named)
    return opener(spec, facts, reading)


def open_folder(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """A folder or .tar of images (class sub-folders: labels), as the survey listed and split it:
    in memory or streamed; held out for the kNN monitor: data.val_path, or data.val_fraction of
    each class (then never trained on)."""
    images, held = facts.images, facts.held
    monitor = spec.monitor and images.labeled
    bank = test = None
    channels, pixels = reading.channels, reading.pixels
    if monitor and spec.val_path:
        test = val_images(spec, reading)
    elif held is not None:
        test = decode_to_memory(held, reading.eval_size, channels, decoder=spec.decoder, pixels=pixels)
    if facts.in_memory:
        train = decode_to_memory(images, reading.train_size, channels, decoder=spec.decoder, pixels=pixels)
        bank = train if monitor else None
    else:
        train = StreamImages(images, reading.train_size, channels, spec.large_images, reading.transform,
                             reading.crops, spec.decoder, reading.device_crops, pixels)
        if monitor:
            bank = decode_to_memory(random_subset(images, BANK_IMAGES, spec.seed), reading.eval_size, channels,
                                    decoder=spec.decoder, pixels=pixels)
    if bank is not None and test is not None and spec.val_path:
        test = match_classes(test, bank.classes, spec.val_path)
    return Source(train, bank, test, data_identity(images.items))


def paired_images(spec: DataSpec, reading: Reading):
    """The positive pairs of a video (nearby frames of a clip folder) or of places (data.dataset
    pairs: the pairs data.pairs_file lists, or any two images of one place's sub-folder)."""
    if spec.dataset == "video":
        return VideoFramePairs(spec.path, reading.train_size, spec.max_frame_gap, reading.channels,
                               spec.large_images, reading.transform, reading.pixels)
    if spec.pairs_file:
        return ListedPairs(spec.path, spec.pairs_file, reading.train_size, reading.channels, spec.large_images,
                           reading.transform, reading.pixels)
    return VideoFramePairs(spec.path, reading.train_size, ANY_GAP, reading.channels, spec.large_images,
                           reading.transform, reading.pixels, kind="places")


ANY_GAP = 1 << 30  # places: any two images of a place's folder are a pair


def open_video(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """Positive pairs of images, not labels: nearby frames of the videos in data.path, or two
    acquisitions of one place (paired_images); no kNN monitor."""
    pairs = paired_images(spec, reading)
    return Source(pairs, None, None, data_identity([os.path.relpath(f, spec.path) for f in pairs.frames]))


def open_shards(spec: DataSpec, facts: DataFacts, reading: Reading) -> Source:
    """WebDataset-style tar shards, streamed; the kNN bank is the first BANK_IMAGES images of the stream."""
    from byol.data.shards import ShardStream

    train = ShardStream(spec.path, reading.train_size, reading.channels, spec.large_images, reading.transform,
                        spec.seed, reading.batch_size, crops=reading.crops, eval_size=reading.eval_size,
                        decoder=spec.decoder, device_crops=reading.device_crops, pixels=reading.pixels)
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
        test = match_channels(load_dataset(spec.dataset, spec.val_path or spec.path, "test"), reading.channels)
        labeled = train.labels >= 0
        bank = train if labeled.all() else train.subset(labeled)
    return Source(train, bank, test, data_identity(images=train.images, labels=train.labels))


def val_images(spec: DataSpec, reading: Reading) -> MemoryImages:
    """The labeled images of data.val_path, decoded at the evaluation size, for the kNN monitor."""
    test = decode_to_memory(list_images(spec.val_path), reading.eval_size, reading.channels, pixels=reading.pixels)
    if not test.classes:
        raise DataError(f"data.val_path {spec.val_path!r} has no class sub-folders; the kNN monitor needs labels")
    return test
