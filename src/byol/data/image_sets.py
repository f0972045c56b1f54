"""Data sets over listed images, in memory or streamed, and pairs of video frames.

Two ways to feed training:
- `MemoryImages`: every image decoded once into one uint8 tensor (N, C, S, S). The fast
  path for small sets (CIFAR, STL-10, the demo): a batch is one slice, augmented on the
  training device by `byol.core.augment.BatchAugment`.
- `StreamImages`: decoded per item by DataLoader workers, for sets that do not fit.
  Items are uint8 (C, S, S) (augmented later, on the device) or, with a `TwoViewTransform`,
  the two views already augmented in the worker (as DL-Art-School does).

Unreadable image files are skipped, counted and reported once each with their path.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from byol.core.augment import AugmentConfig, ViewConfig
from byol.data.bands import Pixels
from byol.data.batch import Batch
from byol.data.decode import cut_views, decode_item, jpeg_decoder, numpy_rng
from byol.data.listing import (
    DECODE_ERRORS,
    BadImages,
    DataError,
    ImageList,
    is_image_name,
    is_tar,
    natural_key,
    read_all_bytes,
)


def decode_to_memory(images: ImageList, size: int, channels: int = 3, threads: int | None = None,
                     limit: int | None = None, decoder: str = "auto", pixels: Pixels | None = None
                     ) -> "MemoryImages":
    """Decode every image once into a uint8 tensor (N, C, size, size), or float32 in the data's
    units for full-precision `pixels`; skip unreadable ones."""
    decoder = jpeg_decoder(decoder)
    if limit is not None:
        images = images.subset(range(min(limit, len(images))))
    blobs = read_all_bytes(images)
    bad = BadImages()

    def decode(i: int):
        try:
            return decode_item(blobs[i], channels, size, "resize", decoder=decoder, pixels=pixels)[0].numpy()
        except DECODE_ERRORS as e:
            bad.report(f"{images.root}/{images.items[i]}", e)
            return None

    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(decode, range(len(blobs))))
    keep = [i for i, a in enumerate(arrays) if a is not None]
    if not keep:
        raise DataError(f"no readable image in {images.root!r} ({len(bad)} unreadable)")
    x = torch.from_numpy(np.stack([arrays[i] for i in keep]))
    y = torch.tensor([images.labels[i] for i in keep], dtype=torch.long)
    return MemoryImages(x, y, images.classes, skipped=[*images.left_out, *bad.paths])


class MemoryImages(torch.utils.data.Dataset):
    """Images (N, C, S, S), uint8 pictures or float32 values in the data's units (data.pixels
    full), and labels (N,) in memory; batches are slices.

    `__getitems__` lets a DataLoader fetch a whole batch with one indexing op.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str] | None = None,
                 skipped: list[str] | None = None):
        if images.dtype not in (torch.uint8, torch.float32) or images.dim() != 4:
            raise DataError(f"MemoryImages expects uint8 or float32 (N, C, H, W), got {images.dtype} "
                            f"{tuple(images.shape)}")
        self.images, self.labels = images, labels
        self.classes = classes or []
        self.skipped = list(skipped or [])  # paths of the unreadable files left out

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: torch.Tensor) -> "MemoryImages":
        """The images at `indices` (a tensor of indices or a boolean mask), with the same classes."""
        return MemoryImages(self.images[indices], self.labels[indices], self.classes)

    def __getitem__(self, i) -> Batch:
        return Batch(images=self.images[i], labels=self.labels[i])

    def __getitems__(self, indices) -> Batch:
        idx = torch.as_tensor(indices)
        return Batch(images=self.images[idx], labels=self.labels[idx])


class BatchIndices(torch.utils.data.Dataset):
    """The indices of a MemoryImages, for images that live on the training device.

    The DataLoader (and its DistributedSampler) then moves only indices; the module slices
    its device-resident uint8 tensor (the `data` a BYOLModule is built with).
    """

    def __init__(self, dataset: MemoryImages):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices) -> Batch:
        return Batch(indices=torch.as_tensor(indices))


class AugmentedImages(torch.utils.data.Dataset):
    """In-memory images augmented one by one in DataLoader workers (`data.augment_on: workers`):
    items are Batch(view1, view2, labels)."""

    def __init__(self, memory: MemoryImages, transform):
        self.memory, self.transform = memory, transform
        self.images, self.classes, self.skipped = memory.images, memory.classes, memory.skipped

    def __len__(self) -> int:
        return len(self.memory)

    def __getitem__(self, i) -> Batch:
        v1, v2 = self.transform(self.memory.images[i])
        return Batch(view1=v1, view2=v2, labels=self.memory.labels[i])


class StreamImages(torch.utils.data.Dataset):
    """Images decoded per item (in DataLoader workers): uint8 (C, S, S), or two views.

    A file that is missing or unreadable is reported and replaced by the next readable one,
    so a file that disappears between epochs costs a warning, not the run.
    """

    def __init__(self, images: ImageList, size: int | None, channels: int = 3, mode: str = "resize",
                 transform=None, crops: AugmentConfig | None = None, decoder: str = "auto",
                 device_crops: bool = False, pixels: Pixels | None = None):
        if is_tar(images.root) and Path(images.root).is_file():
            raise DataError(f"{images.root!r}: a tar archive is read whole; use in_memory: true, "
                            "or unpack it, or write WebDataset shards for streaming")
        self.images, self.size, self.channels, self.mode = images, size, channels, mode
        self.transform, self.crops, self.decoder = transform, crops, jpeg_decoder(decoder)
        self.device_crops, self.pixels = device_crops, pixels
        self.classes = images.classes
        self.bad = BadImages()

    @property
    def skipped(self) -> list[str]:
        """The files left out: at listing, and those this process found unreadable (data workers
        list theirs in the run folder, see record_skipped)."""
        return [*self.images.left_out, *self.bad.paths]

    def __len__(self) -> int:
        return len(self.images)

    def decoded(self, i: int):
        """(uint8 image, partner, boxes or None): see decode_item."""
        path = os.path.join(self.images.root, self.images.items[i])
        return decode_item(path, self.channels, self.size, self.mode, crops=self.crops, decoder=self.decoder,
                           device_crops=self.device_crops, pixels=self.pixels)

    def __getitem__(self, i: int):
        for attempt in range(min(len(self), 100)):
            j = (i + attempt) % len(self)
            try:
                decoded = self.decoded(j)
            except (*DECODE_ERRORS, FileNotFoundError) as e:
                self.bad.report(os.path.join(self.images.root, self.images.items[j]), e)
                continue
            return training_item(decoded, self.images.labels[j], self.transform)
        raise DataError(f"no readable image found near index {i} in {self.images.root!r}")


class WholeImageCrops(StreamImages):
    """Labeled images decoded per item, each as one random resized crop (`view`'s scale and
    ratio) of the whole image, its shorter side shrunk to `bound` only where longer: the training
    crops of linear evaluation and fine-tuning on photographs of many sizes, drawn as DeepMind's
    `_decode_and_random_crop` (byol/utils/dataset.py) draws them. Items are Batch(images=crop
    (C, size, size) uint8, labels); flips and the rest happen on the training device."""

    def __init__(self, images: ImageList, size: int, bound: int | None, channels: int = 3,
                 view: ViewConfig | None = None, interpolation: str = "bicubic", decoder: str = "auto"):
        super().__init__(images, bound, channels, mode="full", decoder=decoder)
        self.view, self.crop_size, self.interpolation = view or ViewConfig(), size, interpolation
        self.labels = torch.tensor(images.labels, dtype=torch.long)

    def subset(self, indices: torch.Tensor) -> "WholeImageCrops":
        """The same crops of only the images at `indices`."""
        return WholeImageCrops(self.images.subset(indices), self.crop_size, self.size, self.channels, self.view,
                               self.interpolation, self.decoder)

    def decoded(self, i: int):
        path = os.path.join(self.images.root, self.images.items[i])
        (crop,), _ = cut_views(path, self.channels, (self.view,), self.crop_size, self.size, self.interpolation,
                               decoder=self.decoder)
        return crop, None, None


def training_item(decoded: tuple, label: int, transform=None) -> Batch:
    """What a streamed data set yields for one image, from decode_item's (image, partner, boxes):
    the uint8 image (with view 2's crop as its partner where the crops were taken from the full
    image in the worker, or with both views' boxes where the device takes them), or its two views
    augmented by a worker `transform`."""
    x, partner, boxes = decoded
    if transform is not None:
        v1, v2 = transform.pair(x, x if partner is None else partner)
        return Batch(view1=v1, view2=v2, labels=label)
    return Batch(images=x, partners=partner, boxes=boxes, labels=label)


class VideoFramePairs(torch.utils.data.Dataset):
    """Two similar video frames as the two views of a sample (as DL-Art-School offers).

    root/<clip>/<frame files, in name order>. Item i is frame i of all frames; its partner
    is another frame of the same clip at most `max_frame_gap` frames away. Items are
    Batch(images=frame, partners=partner, labels=-1), uint8 (C, S, S), augmented later with
    view 1 and view 2 each; with a `TwoViewTransform` the worker augments them (view1, view2).
    """

    def __init__(self, root: str | Path, size: int, max_frame_gap: int = 1, channels: int = 3,
                 mode: str = "resize", transform=None, pixels: Pixels | None = None, kind: str = "video"):
        if max_frame_gap < 1:
            raise DataError(f"max_frame_gap must be >= 1, got {max_frame_gap}")
        root = Path(root)
        folder, group, member = {"video": ("video folder", "clip", "frames"),
                                 "places": ("folder of places", "place", "images")}[kind]
        if not root.is_dir():
            raise DataError(f"{folder} {str(root)!r} does not exist")
        self.frames: list[str] = []
        self.clip_range: list[tuple[int, int]] = []
        for clip in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            names = sorted((f.name for f in clip.iterdir() if is_image_name(f.name) and f.is_file()), key=natural_key)
            if len(names) < 2:
                continue
            start = len(self.frames)
            self.frames += [str(clip / n) for n in names]
            self.clip_range += [(start, len(self.frames))] * len(names)
        if not self.frames:
            raise DataError(f"{folder} {str(root)!r} has no {group} sub-folder with two or more {member}")
        self.size, self.gap, self.channels, self.mode = size, max_frame_gap, channels, mode
        self.transform, self.pixels = transform, pixels
        self.classes: list[str] = []
        self.bad = BadImages()

    def __len__(self) -> int:
        return len(self.frames)

    def partner(self, i: int) -> int:
        lo, hi = self.clip_range[i]
        choices = [j for j in range(max(lo, i - self.gap), min(hi, i + self.gap + 1)) if j != i]
        return int(numpy_rng().choice(choices))

    def decoded(self, i: int) -> torch.Tensor:
        """Frame i. An unreadable frame is said once (BadImages) and the nearest readable frame of
        its clip stands in; a clip with none is one DataError."""
        lo, hi = self.clip_range[i]
        for j in sorted(range(lo, hi), key=lambda j: (abs(j - i), j)):
            try:
                return decode_item(self.frames[j], self.channels, self.size, self.mode, numpy_rng(),
                                   pixels=self.pixels)[0]
            except DECODE_ERRORS as e:
                self.bad.report(self.frames[j], e)
        raise DataError(f"no image of {str(Path(self.frames[i]).parent)!r} can be read")

    def __getitem__(self, i: int) -> Batch:
        a, b = self.decoded(i), self.decoded(self.partner(i))
        if self.transform is not None:
            v1, v2 = self.transform.pair(a, b)
            return Batch(view1=v1, view2=v2, labels=-1)
        return Batch(images=a, partners=b, labels=-1)


class ListedPairs(torch.utils.data.Dataset):
    """Positive pairs named in a list file: two acquisitions of one place (two dates, or two
    sensors read with the same bands), each the source of one view, as two video frames are.
    Each line names two image files relative to `root`, separated by a comma or a tab; blank
    lines and lines starting with '#' are skipped. Item i is pair i, its two images in a random
    order (each serves as view 1 and as view 2). Items are Batch(images, partners, labels=-1),
    augmented later; with a `TwoViewTransform` the worker augments them (view1, view2). A pair
    with an unreadable image is said once and the next pair stands in."""

    def __init__(self, root: str | Path, pairs_file: str | Path, size: int | None, channels: int = 3,
                 mode: str = "resize", transform=None, pixels: Pixels | None = None):
        root, pairs_file = Path(root), Path(pairs_file)
        if not root.is_dir():
            raise DataError(f"data.path {str(root)!r} is not a folder (the pairs' files are named relative to it)")
        if not pairs_file.is_file():
            raise DataError(f"data.pairs_file {str(pairs_file)!r} does not exist")
        self.pairs: list[tuple[str, str]] = []
        for number, line in enumerate(pairs_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.replace("\t", ",").split(",") if p.strip()]
            if len(parts) != 2:
                raise DataError(f"{str(pairs_file)!r}, line {number}: {line[:80]!r} names {len(parts)} files; give two, "
                                "separated by a comma or a tab")
            for part in parts:
                path = (root / part).resolve()
                if not path.is_relative_to(root.resolve()) or not path.is_file():
                    raise DataError(f"{str(pairs_file)!r}, line {number}: {part!r} is not a file in {str(root)!r}")
            self.pairs.append((str(root / parts[0]), str(root / parts[1])))
        if not self.pairs:
            raise DataError(f"data.pairs_file {str(pairs_file)!r} lists no pair")
        self.size, self.channels, self.mode, self.transform, self.pixels = size, channels, mode, transform, pixels
        self.classes: list[str] = []
        self.bad = BadImages()

    @property
    def frames(self) -> list[str]:
        """Every file the pairs name, once each, in the order of the list (the data's identity)."""
        return list(dict.fromkeys(f for pair in self.pairs for f in pair))

    def __len__(self) -> int:
        return len(self.pairs)

    def decoded(self, path: str) -> torch.Tensor:
        return decode_item(path, self.channels, self.size, self.mode, numpy_rng(), pixels=self.pixels)[0]

    def __getitem__(self, i: int) -> Batch:
        for attempt in range(min(len(self), 100)):
            a, b = self.pairs[(i + attempt) % len(self)]
            try:
                x, y = self.decoded(a), self.decoded(b)
            except DECODE_ERRORS as e:
                self.bad.report(f"{a} or {b}", e)
                continue
            if torch.rand(()) < 0.5:
                x, y = y, x
            if self.transform is not None:
                v1, v2 = self.transform.pair(x, y)
                return Batch(view1=v1, view2=v2, labels=-1)
            return Batch(images=x, partners=y, labels=-1)
        raise DataError(f"no readable pair found near pair {i} of the list")

