"""Image data: ImageFolder directories and tar archives, in memory or streamed.

Layouts read (the same as torchvision's ImageFolder):
    root/<class>/.../<image>           labeled; class = first folder level under root
    root/<image>                       unlabeled (label -1) when root has no sub-folders
    archive.tar[.gz] with that layout

Two ways to feed training:
- `MemoryImages`: every image decoded once into one uint8 tensor (N, C, S, S). The fast
  path for small sets (CIFAR, STL-10, the demo): a batch is one slice, augmented on the
  training device by `byol.augment.BatchAugment`.
- `StreamImages`: decoded per item by DataLoader workers, for sets that do not fit.
  Items are uint8 (C, S, S) (augmented later, on the device) or, with a `TwoViewTransform`,
  the two views already augmented in the worker (as DL-Art-School does).

Unreadable image files are skipped, counted and reported once each with their path.
"""
from __future__ import annotations

import contextlib
import os
import re
import tarfile
import zlib
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from byol.core.augment import AugmentConfig, ViewConfig
from byol.data.decode import cut_views, decode_item, jpeg_decoder
from byol.data.batch import Batch

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class DataError(ValueError):
    """Data that cannot be used, with a message that names the file or folder."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def natural_key(name: str) -> list:
    """Sort key that orders the numbers in a name by value: frame2 before frame10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def is_tar(path: str | Path) -> bool:
    return str(path).lower().endswith(TAR_SUFFIXES)


@dataclass
class ImageList:
    """Where the images are, their labels (-1 when unlabeled) and the class names."""

    root: str
    items: list[str]
    labels: list[int]
    classes: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # image files found and not listed (root/name), each said once

    @property
    def labeled(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices) -> "ImageList":
        """The images at `indices` (in that order), with their labels and the same classes."""
        keep = [int(i) for i in indices]
        return ImageList(self.root, [self.items[i] for i in keep], [self.labels[i] for i in keep], self.classes,
                         self.left_out)


def ends_cleanly(tar: tarfile.TarFile) -> bool:
    """Whether a listed archive (getmembers) ends where tar says an archive ends: nothing but
    zero blocks after its last member. Garbage in a damaged header makes tarfile stop there."""
    tar.fileobj.seek(tar.offset)
    while chunk := tar.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            return False
    return True


def _label_items(root: str, relpaths: list[str]) -> ImageList:
    """Class = first path component when every image sits in a sub-folder; else unlabeled. With
    two or more class folders, images at the top level beside them (a stray README.jpg) are left
    out with a line, not allowed to turn the whole set unlabeled."""
    relpaths = sorted(relpaths)
    top = [p for p in relpaths if "/" not in p]
    left_out = []
    if top and len({p.split("/")[0] for p in relpaths if "/" in p}) >= 2:
        print(f"byol: {root!r}: {len(top)} image(s) at the top level beside the class folders left out (e.g. "
              f"{top[0]!r}): every image of a labeled set sits in its class folder", file=sys.stderr)
        relpaths = [p for p in relpaths if "/" in p]
        left_out = [f"{root}/{p}" for p in top]
    parts = [p.split("/") for p in relpaths]
    if parts and all(len(p) >= 2 for p in parts):
        classes = sorted({p[0] for p in parts})
        index = {c: i for i, c in enumerate(classes)}
        return ImageList(root, relpaths, [index[p[0]] for p in parts], classes, left_out)
    return ImageList(root, relpaths, [-1] * len(relpaths), [], left_out)


def _strip_common_prefix(names: list[str]) -> list[str]:
    """Tar members often sit under one top folder (train/airplane/1.jpg): drop it."""
    while names and all("/" in n for n in names):
        first = names[0].split("/", 1)[0]
        if all(n.split("/", 1)[0] == first for n in names) and all(n.count("/") >= 2 for n in names):
            names = [n.split("/", 1)[1] for n in names]
        else:
            break
    return names


def _walk_images(path: Path) -> tuple[list[str], int, list[str]]:
    """(relative paths of the image files under `path`, symbolic links skipped, image names that
    are no regular file). Links that lead out of the folder are followed (a class folder may live
    elsewhere); a link that leads back into it (a loop, or a second way to a folder or file listed
    in its own place) is skipped, and no real folder or file is listed twice. Only regular files
    are read: a FIFO would block the reader for ever, a device never ends, a dangling link has
    nothing to read."""
    root = os.path.realpath(path)

    def leads_inside(p: str) -> bool:
        return os.path.islink(p) and os.path.commonpath([root, os.path.realpath(p)]) == root

    rel, links, seen_dirs, seen_files, special = [], 0, set(), set(), []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # reached a second way from outside links
            dirnames[:] = []
            links += 1
            continue
        seen_dirs.add(real)
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if leads_inside(os.path.join(dirpath, d)):
                links += 1
            else:
                kept.append(d)
        dirnames[:] = kept
        for f in filenames:
            full = os.path.join(dirpath, f)
            if not is_image_name(f) or f.startswith("."):
                continue
            if not os.path.isfile(full):  # follows links: False for a FIFO, device, socket, dangling link
                special.append(os.path.relpath(full, path))
                continue
            if leads_inside(full) or os.path.realpath(full) in seen_files:
                links += 1
                continue
            seen_files.add(os.path.realpath(full))
            rel.append(os.path.relpath(full, path).replace(os.sep, "/"))
    return rel, links, special


def list_images(path: str | Path) -> ImageList:
    """Scan a folder (recursively) or a tar archive for images."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {str(path)!r} does not exist")
    if path.is_file():
        if not is_tar(path):
            raise DataError(f"data path {str(path)!r} is a file but not a .tar/.tar.gz archive")
        try:
            with tarfile.open(path) as tar:
                names = [m.name.lstrip("./") for m in tar.getmembers() if m.isfile() and is_image_name(m.name)]
                damaged = not ends_cleanly(tar)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read archive {str(path)!r}: {e}") from None
        if damaged:  # tarfile stops listing at a damaged header as if the archive ended there
            raise DataError(f"archive {str(path)!r} is damaged at byte {tar.offset}: only the {len(names)} image(s) "
                            "before that point can be listed, the rest would be left out silently; re-create "
                            "or repair the archive")
        if len(set(names)) < len(names):  # tar keeps every copy of a name; its last one is the file
            print(f"byol: {str(path)!r}: {len(names) - len(set(names))} member name(s) appear more than once; each "
                  "is read once, its last copy (as tar extracts it)", file=sys.stderr)
            names = list(dict.fromkeys(names))
        if not names:
            raise DataError(f"archive {str(path)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        stripped = _strip_common_prefix(names)
        images = _label_items(str(path), stripped)
        prefix = {s: n for s, n in zip(stripped, names)}
        images.items = [prefix[s] for s in images.items]
        return images
    if not path.is_dir():
        raise DataError(f"data path {str(path)!r} is neither a folder nor a .tar archive (a device, FIFO or "
                        "socket); give a folder of images or a .tar of one")
    rel, links, special = _walk_images(path)
    if special:
        print(f"byol: {str(path)!r}: {len(special)} image name(s) skipped that are no regular file (a dangling "
              f"link, FIFO or device; e.g. {special[0]!r})", file=sys.stderr)
    if links:
        print(f"byol: {str(path)!r}: {links} symbolic link(s) skipped: they lead back into the folder or to a "
              "file already listed; each image is read once, labeled by the folder it is in", file=sys.stderr)
    if not rel:
        what = "is empty" if not any(path.iterdir()) else f"has no image files ({', '.join(IMAGE_EXTENSIONS)})"
        raise DataError(f"data folder {str(path)!r} {what}")
    images = _label_items(str(path), rel)
    images.left_out = [*(f"{path}/{p}" for p in special), *images.left_out]
    return images


# ---------------------------------------------------------------------------
# Reading (decoding itself: byol.data.decode)


class BadImages:
    """Counts unreadable files and says so once per file and process (the kNN bank and the
    training stream may both meet it): one line on stderr with its path."""

    said: set[str] = set()  # the paths already reported in this process

    def __init__(self):
        self.paths: list[str] = []

    def report(self, path: str, error: Exception) -> None:
        if path not in self.paths:
            self.paths.append(path)
        if path not in BadImages.said:
            BadImages.said.add(path)
            print(f"byol: skipping unreadable image {path} ({unreadable_reason(error)})", file=sys.stderr, flush=True)
            record_skipped(path)

    def __len__(self) -> int:
        return len(self.paths)


SKIPPED_DIR_ENV = "BYOL_SKIPPED_DIR"  # where processes (data workers too) list what they skipped


def record_skipped(path: str) -> None:
    """With BYOL_SKIPPED_DIR set (a run, for its summary), one line with `path` in this process's
    own file there (host-pid.txt: no two processes write one file); data workers are processes of
    their own, whose counts the run would not see otherwise."""
    folder = os.environ.get(SKIPPED_DIR_ENV)
    if not folder:
        return
    import socket

    with contextlib.suppress(OSError), open(os.path.join(folder, f"{socket.gethostname()}-{os.getpid()}.txt"),
                                            "a", encoding="utf-8") as f:
        f.write(path.replace("\n", " ") + "\n")


def unreadable_reason(error: Exception) -> str:
    """Why a file could not be decoded, in a few words (PIL names the in-memory buffer otherwise)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, UnidentifiedImageError) and text.startswith("cannot identify image file"):
        return "not in an image format PIL can read"
    return text


DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _read_all_bytes(images: ImageList) -> list[bytes]:
    if is_tar(images.root) and Path(images.root).is_file():
        wanted = set(images.items)
        found: dict[str, bytes] = {}
        with tarfile.open(images.root) as tar:
            for m in tar:
                name = m.name.lstrip("./")
                if name in wanted:
                    found[name] = tar.extractfile(m).read()
        return [found[i] for i in images.items]
    return [Path(images.root, i).read_bytes() for i in images.items]


def decode_to_memory(images: ImageList, size: int, channels: int = 3, threads: int | None = None,
                     limit: int | None = None, decoder: str = "auto") -> "MemoryImages":
    """Decode every image once into a uint8 tensor (N, C, size, size); skip unreadable ones."""
    decoder = jpeg_decoder(decoder)
    if limit is not None:
        images = images.subset(range(min(limit, len(images))))
    blobs = _read_all_bytes(images)
    bad = BadImages()

    def decode(i: int):
        try:
            return decode_item(blobs[i], channels, size, "resize", decoder=decoder)[0].numpy()
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
    """uint8 images (N, C, S, S) and labels (N,) in memory; batches are slices.

    `__getitems__` lets a DataLoader fetch a whole batch with one indexing op.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str] | None = None,
                 skipped: list[str] | None = None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"MemoryImages expects uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
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


GRAYSCALE_SAMPLE = 4096  # images whose pixels decide whether the data is grayscale


def looks_grayscale(dataset, channels: int = 3, sample: int = GRAYSCALE_SAMPLE) -> bool:
    """One-channel data, or in-memory RGB images (a data set or a uint8 tensor) whose three
    channels are equal (the first `sample` images are checked); streamed RGB data is taken to
    be in colour."""
    if channels == 1:
        return True
    images = dataset if isinstance(dataset, torch.Tensor) else getattr(getattr(dataset, "dataset", dataset),
                                                                      "images", None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        return False
    x = images[:sample]
    return bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all())


class StreamImages(torch.utils.data.Dataset):
    """Images decoded per item (in DataLoader workers): uint8 (C, S, S), or two views.

    A file that is missing or unreadable is reported and replaced by the next readable one,
    so a file that disappears between epochs costs a warning, not the run.
    """

    def __init__(self, images: ImageList, size: int | None, channels: int = 3, mode: str = "resize",
                 transform=None, crops: AugmentConfig | None = None, decoder: str = "auto"):
        if is_tar(images.root) and Path(images.root).is_file():
            raise DataError(f"{images.root!r}: a tar archive is read whole; use in_memory: true, "
                            "or unpack it, or write WebDataset shards for streaming")
        self.images, self.size, self.channels, self.mode = images, size, channels, mode
        self.transform, self.crops, self.decoder = transform, crops, jpeg_decoder(decoder)
        self.classes = images.classes
        self.bad = BadImages()

    @property
    def skipped(self) -> list[str]:
        """The files left out: at listing, and those this process found unreadable (data workers
        list theirs in the run folder, see record_skipped)."""
        return [*self.images.left_out, *self.bad.paths]

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int):
        """(uint8 (C, S, S) image, partner or None): see decode_item."""
        path = os.path.join(self.images.root, self.images.items[i])
        return decode_item(path, self.channels, self.size, self.mode, crops=self.crops, decoder=self.decoder)

    def __getitem__(self, i: int):
        for attempt in range(min(len(self), 100)):
            j = (i + attempt) % len(self)
            try:
                x, partner = self.load(j)
            except (*DECODE_ERRORS, FileNotFoundError) as e:
                self.bad.report(os.path.join(self.images.root, self.images.items[j]), e)
                continue
            return training_item(x, self.images.labels[j], partner, self.transform)
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

    def load(self, i: int):
        path = os.path.join(self.images.root, self.images.items[i])
        (crop,), _ = cut_views(path, self.channels, (self.view,), self.crop_size, self.size, self.interpolation,
                               decoder=self.decoder)
        return crop, None


def training_item(x: torch.Tensor, label: int, partner: torch.Tensor | None, transform=None) -> Batch:
    """What a streamed data set yields for one image: the uint8 image (with view 2's crop as its
    partner where the crops were taken from the full image), or its two views augmented by a
    worker `transform`."""
    if transform is not None:
        v1, v2 = transform.pair(x, x if partner is None else partner)
        return Batch(view1=v1, view2=v2, labels=label)
    return Batch(images=x, partners=partner, labels=label)


class VideoFramePairs(torch.utils.data.Dataset):
    """Two similar video frames as the two views of a sample (as DL-Art-School offers).

    root/<clip>/<frame files, in name order>. Item i is frame i of all frames; its partner
    is another frame of the same clip at most `max_frame_gap` frames away. Items are
    Batch(images=frame, partners=partner, labels=-1), uint8 (C, S, S), augmented later with
    view 1 and view 2 each; with a `TwoViewTransform` the worker augments them (view1, view2).
    """

    def __init__(self, root: str | Path, size: int, max_frame_gap: int = 1, channels: int = 3,
                 mode: str = "resize", transform=None, seed: int = 0):
        if max_frame_gap < 1:
            raise DataError(f"max_frame_gap must be >= 1, got {max_frame_gap}")
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"video folder {str(root)!r} does not exist")
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
            raise DataError(f"video folder {str(root)!r} has no clip sub-folder with two or more frames")
        self.size, self.gap, self.channels, self.mode = size, max_frame_gap, channels, mode
        self.transform = transform
        self.seed = seed
        self._rng: tuple[int, np.random.Generator] | None = None
        self.classes: list[str] = []
        self.bad = BadImages()

    @property
    def rng(self) -> np.random.Generator:
        """One generator per process, seeded from torch's per-worker seed: workers differ."""
        if self._rng is None or self._rng[0] != os.getpid():
            self._rng = (os.getpid(), np.random.default_rng([self.seed, torch.initial_seed() % 2**32]))
        return self._rng[1]

    def __len__(self) -> int:
        return len(self.frames)

    def partner(self, i: int) -> int:
        lo, hi = self.clip_range[i]
        choices = [j for j in range(max(lo, i - self.gap), min(hi, i + self.gap + 1)) if j != i]
        return int(self.rng.choice(choices))

    def load(self, i: int) -> torch.Tensor:
        """Frame i. An unreadable frame is said once (BadImages) and the nearest readable frame of
        its clip stands in; a clip with none is one DataError."""
        lo, hi = self.clip_range[i]
        for j in sorted(range(lo, hi), key=lambda j: (abs(j - i), j)):
            try:
                return decode_item(self.frames[j], self.channels, self.size, self.mode, self.rng)[0]
            except DECODE_ERRORS as e:
                self.bad.report(self.frames[j], e)
        raise DataError(f"no frame of the clip {str(Path(self.frames[i]).parent)!r} can be read")

    def __getitem__(self, i: int) -> Batch:
        a, b = self.load(i), self.load(self.partner(i))
        if self.transform is not None:
            v1, v2 = self.transform.pair(a, b)
            return Batch(view1=v1, view2=v2, labels=-1)
        return Batch(images=a, partners=b, labels=-1)


def random_subset(images: ImageList, n: int, seed: int) -> ImageList:
    """n images drawn at random (fixed by seed), kept in their listed order; all of them if n >= len."""
    if n >= len(images):
        return images
    g = torch.Generator().manual_seed(seed)
    return images.subset(sorted(torch.randperm(len(images), generator=g)[:n].tolist()))


def first_per_class(images: ImageList, n: int) -> ImageList:
    """The first n images of each class, in sorted path order."""
    counts: dict[int, int] = {}
    keep = []
    for i, label in enumerate(images.labels):
        if counts.get(label, 0) < n:
            counts[label] = counts.get(label, 0) + 1
            keep.append(i)
    return images.subset(keep)


def match_classes(test_set: MemoryImages, classes: list[str], where: str) -> MemoryImages:
    """The test images with labels that index `classes` (the training set's), matched by class
    name: a test set may hold some of the classes, in any order. A test class that training
    never saw cannot be scored, and is refused."""
    if not test_set.classes:
        raise DataError(f"{where!r} has no class sub-folders: evaluation needs labels")
    if test_set.classes == classes:
        return test_set
    unseen = [c for c in test_set.classes if c not in classes]
    if unseen:
        raise DataError(f"{where!r}: class folder {unseen[0]!r} is not among the training classes "
                        f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''}); evaluate on the "
                        "classes training saw, or add that class to the training images")
    index = torch.tensor([classes.index(c) for c in test_set.classes], dtype=torch.long)
    return MemoryImages(test_set.images, index[test_set.labels], list(classes), test_set.skipped)


def balanced_split(labels: torch.Tensor, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(rest, chosen) indices: `fraction` of every class (at least one), chosen with `seed`."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        chosen.append(idx[: max(1, int(len(idx) * fraction + 0.5))])  # half rounds up
    chosen_idx = torch.cat(chosen).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[chosen_idx] = False
    return mask.nonzero().flatten(), chosen_idx


def split_held_out(images: ImageList, fraction: float, seed: int = 0,
                   find_copies: bool = True) -> tuple[ImageList, ImageList]:
    """(rest, held out): `fraction` of each class held out, drawn with a fixed seed. With
    find_copies, a held-out file whose bytes equal a training file's is left out of the held-out
    set, with a line: a copy on both sides would be its own nearest neighbour and inflate the kNN
    check. It reads the files whose sizes match: cheap for a set that is read into memory anyway,
    a pass over much of the data for a streamed one, which the caller then leaves it off for."""
    rest, held = balanced_split(torch.tensor(images.labels), fraction, seed)
    rest, held = images.subset(rest), images.subset(held)
    held.left_out = []  # the listing's are the training images' (rest); held's are its own
    twins = copies_of(held, rest) if find_copies else set()
    if twins:
        print(f"byol: {images.root!r}: {len(twins)} held-out image(s) are byte-identical copies of training images "
              f"(e.g. {held.items[min(twins)]!r}) and are left out of the held-out set", file=sys.stderr)
        copies = [f"{held.root}/{held.items[i]}" for i in sorted(twins)]
        held = held.subset([i for i in range(len(held)) if i not in twins])
        held.left_out = copies
    return rest, held


def copies_of(held: ImageList, rest: ImageList) -> set[int]:
    """The positions in `held` of files whose bytes equal a file of `rest` (same root): sizes
    first (file headers, tar headers), then a hash of the files whose size is shared."""
    import hashlib

    if is_tar(held.root) and Path(held.root).is_file():
        with tarfile.open(held.root) as tar:
            size_of = {m.name.lstrip("./"): m.size for m in tar.getmembers() if m.isfile()}
    else:
        size_of = {}
        for name in (*held.items, *rest.items):
            with contextlib.suppress(OSError):
                size_of[name] = os.path.getsize(os.path.join(held.root, name))
    held_sizes = {size_of.get(n) for n in held.items} - {None}
    rest_candidates = [n for n in rest.items if size_of.get(n) in held_sizes]
    if not rest_candidates:
        return set()
    rest_sizes = {size_of[n] for n in rest_candidates}
    held_candidates = [i for i, n in enumerate(held.items) if size_of.get(n) in rest_sizes]
    names = rest_candidates + [held.items[i] for i in held_candidates]
    blobs = _read_all_bytes(ImageList(held.root, names, [-1] * len(names)))
    digests = [hashlib.blake2b(b, digest_size=16).digest() for b in blobs]
    seen = set(digests[:len(rest_candidates)])
    return {i for i, d in zip(held_candidates, digests[len(rest_candidates):]) if d in seen}
