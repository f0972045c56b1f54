"""Tar shards in the WebDataset layout, for data sets too large to list or hold in memory.

    byol shards FOLDER OUT --shard-size 10000     (FOLDER: an ImageFolder, or a .tar of one)
    OUT/shard-000000.tar, shard-000001.tar, ..., OUT/shards.json

Each shard holds KEY.jpg (or .png, ..., the original bytes) and KEY.cls (the class index as
text), in the order they are read. shards.json lists the shards with their sample counts and
the class names. Training reads them with `data.dataset: shards` and `data.path: OUT` (a
local folder or any fsspec URL, e.g. s3://bucket/shards where the user has s3fs).

Reading (ShardStream): every (rank, worker) reads its own shards sequentially — shard i goes
to reader i mod readers, or, with fewer shards than readers, every reader reads all shards
and keeps every readers-th sample — through a shuffle buffer. Each rank yields exactly
total // world_size samples per epoch (cycling through its shards if it runs short), so no
rank waits for another at the end of an epoch.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from byol.checkpoint import atomic_path, atomic_write_text
from byol.data import loader
from byol.data.decode import decode_item, jpeg_decoder
from byol.data.image_sets import training_item
from byol.data.listing import (
    DECODE_ERRORS,
    BadImages,
    DataError,
    list_images,
    read_all_bytes,
)

INDEX = "shards.json"


def write_shards(src: str | Path, out: str | Path, shard_size: int = 10000, seed: int = 0,
                 shuffle: bool = True) -> Path:
    """Write `src`'s images as shards of `shard_size` samples; returns the index file.

    The images are shuffled first (with `seed`): an ImageFolder lists one class after
    another, and a shard of one class would defeat the reader's shuffle buffer."""
    if shard_size < 1:
        raise DataError(f"--shard-size must be at least 1, got {shard_size}")
    images = list_images(src)
    order = np.random.default_rng(seed).permutation(len(images)) if shuffle else np.arange(len(images))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    in_tar = Path(images.root).is_file()
    blobs = read_all_bytes(images) if in_tar else None  # one pass over an archive
    shards = []
    for start in range(0, len(order), shard_size):
        chunk = order[start:start + shard_size]
        name = f"shard-{len(shards):06d}.tar"
        with atomic_path(out / name) as tmp, tarfile.open(tmp, "w") as tar:  # a shard appears whole or not at all
            for i in chunk.tolist():
                key = f"{i:09d}"
                ext = Path(images.items[i]).suffix.lower().lstrip(".") or "jpg"
                _add(tar, f"{key}.{ext}", blobs[i] if in_tar else Path(images.root, images.items[i]).read_bytes())
                _add(tar, f"{key}.cls", str(images.labels[i]).encode())
        shards.append({"name": name, "count": len(chunk)})
    index = out / INDEX  # written last: a folder with an index holds every shard it lists
    atomic_write_text(index, json.dumps({"shards": shards, "classes": images.classes, "source": str(src)}, indent=1))
    return index


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _open(url: str):
    if "://" in url:
        import fsspec

        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def read_index(root: str) -> dict:
    url = f"{root.rstrip('/')}/{INDEX}"
    try:
        with _open(url) as f:
            index = json.loads(f.read())
    except FileNotFoundError:
        raise DataError(f"{root!r} has no {INDEX}: write shards with `byol shards FOLDER {root}`") from None
    if not index.get("shards"):
        raise DataError(f"{url} lists no shards")
    return index


def read_samples(url: str, bad: BadImages, expected: int | None = None):
    """(key, image bytes, label) of each sample of one shard, in order. A shard that cannot be
    opened, or that ends early (damaged: tar stops at a bad header) is said once with the number
    of its samples lost, against the `expected` count of the index."""
    got = 0
    try:
        with _open(url) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            key, data, label = None, None, -1
            for member in tar:
                stem, _, ext = member.name.rpartition(".")
                if stem != key:
                    if data is not None:
                        got += 1
                        yield key, data, label
                    key, data, label = stem, None, -1
                payload = tar.extractfile(member).read() if member.isfile() else b""
                if ext == "cls":
                    try:
                        label = int(payload.decode().strip())
                    except ValueError:
                        bad.report(f"{url}:{member.name}", ValueError(f"class is not an integer: {payload[:20]!r}"))
                else:
                    data = payload
            if data is not None:
                got += 1
                yield key, data, label
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        bad.report(url, OSError(f"the shard cannot be read past sample {got} ({e})"))
        return
    if expected is not None and got < expected:
        bad.report(url, ValueError(f"{expected - got} of its {expected} samples could not be read: the shard is "
                                   "damaged; write it again with `byol shards`"))


def sample_bytes(root: str, n: int) -> list[tuple[str, bytes]]:
    """The first n samples' (name, bytes), in shard order (what the survey looks at)."""
    index, out, bad = read_index(root), [], BadImages()
    for s in index["shards"]:
        url = f"{root.rstrip('/')}/{s['name']}"
        for key, data, _ in read_samples(url, bad, int(s["count"])):
            out.append((f"{url}:{key}", data))
            if len(out) == n:
                return out
    return out


class ShardStream(torch.utils.data.IterableDataset):
    """Samples from the shards under `root`: uint8 (C, S, S) and label, or (view1, view2, label).
    size, mode, crops, device_crops, pixels: see decode_item; eval_size: the side of the kNN bank's images (`head`),
    default size."""

    def __init__(self, root: str, size: int | None, channels: int = 3, mode: str = "resize", transform=None,
                 seed: int = 0, batch_size: int = 1, shuffle_buffer: int = 2000, crops=None,
                 eval_size: int | None = None, decoder: str = "auto", device_crops: bool = False, pixels=None):
        self.root = str(root)
        index = read_index(self.root)
        self.shards = [f"{self.root.rstrip('/')}/{s['name']}" for s in index["shards"]]
        self.counts = {url: int(s["count"]) for url, s in zip(self.shards, index["shards"])}
        missing = [url for url in self.shards if "://" not in url and not os.path.isfile(url)]
        if missing:
            raise DataError(f"{self.root}: {len(missing)} of the {len(self.shards)} shards its index lists are missing "
                            f"(e.g. {missing[0]!r}); write the shards again with `byol shards`, or restore them")
        self.total = sum(int(s["count"]) for s in index["shards"])
        self.classes = list(index.get("classes", []))
        self.size, self.channels, self.mode, self.transform = size, channels, mode, transform
        self.crops, self.eval_size, self.decoder = crops, eval_size or size, jpeg_decoder(decoder)
        self.device_crops, self.pixels = device_crops, pixels
        self.seed, self.batch_size, self.shuffle_buffer = seed, batch_size, shuffle_buffer
        self.epoch = -1  # counts __iter__ calls: persistent workers keep their copy between epochs
        self.bad = BadImages()

    def __len__(self) -> int:
        """Samples per rank and epoch: whole batches, the same on every rank."""
        return self.total // loader.world()[1] // self.batch_size * self.batch_size

    def reader(self) -> tuple[int, int, int]:
        """(this reader's index, number of readers, samples it yields per epoch): each worker
        yields whole batches, so the DataLoader's length is exact."""
        rank, size = loader.world()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        batches = len(self) // self.batch_size
        share = (batches // workers + (1 if worker < batches % workers else 0)) * self.batch_size
        return rank * workers + worker, size * workers, share

    def head(self, n: int):
        """The first n readable samples in shard order, decoded (the kNN monitor's bank)."""
        from byol.data.image_sets import MemoryImages

        images, labels = [], []
        for url in self.shards:
            for name, data, label in read_samples(url, self.bad, self.counts[url]):
                item = self.decode(name, data, label, None, augment=False)
                if item is not None:
                    images.append(item[0])
                    labels.append(item[1])
                if len(images) == n:
                    return MemoryImages(torch.stack(images), torch.tensor(labels), self.classes)
        return MemoryImages(torch.stack(images), torch.tensor(labels), self.classes)

    def _pass(self, reader: int, readers: int, rng: np.random.Generator):
        """One pass over this reader's samples: its shards in a random order."""
        if len(self.shards) >= readers:
            mine, keep = self.shards[reader::readers], None
        else:
            mine, keep = self.shards, reader
        n = 0
        for url in [mine[i] for i in rng.permutation(len(mine))]:
            for key, data, label in read_samples(url, self.bad, self.counts[url]):
                n += 1
                if keep is None or (n - 1) % readers == keep:
                    yield f"{url}:{key}", data, label

    def _shuffled(self, reader: int, readers: int, share: int, rng: np.random.Generator):
        """Pass after pass through a shuffle buffer (emptied at the end of each pass)."""
        fill = max(1, min(self.shuffle_buffer, share))
        while True:
            produced = 0
            buffer: list = []
            for sample in self._pass(reader, readers, rng):
                if len(buffer) < fill:
                    buffer.append(sample)
                    continue
                j = int(rng.integers(len(buffer)))
                sample, buffer[j] = buffer[j], sample  # a random buffered sample out, the new one in
                yield sample
                produced += 1
            for j in rng.permutation(len(buffer)):
                yield buffer[j]
                produced += 1
            if produced == 0:
                raise DataError(f"reader {reader} of {readers} found no samples in {self.root}")

    def __iter__(self):
        self.epoch += 1
        reader, readers, share = self.reader()
        rng = np.random.default_rng([self.seed, self.epoch, reader])
        produced = failed = 0
        for drawn, sample in enumerate(self._shuffled(reader, readers, share, rng)):
            with torch.random.fork_rng(devices=[]):  # the crop boxes' draws follow from the stream's seed
                torch.manual_seed(loader.derived_seed(self.seed, self.epoch, reader, drawn, loader.ITEM_STREAM))
                item = self.decode(*sample, rng)
            if item is None:
                failed += 1
                if failed > max(100, share):
                    raise DataError(f"{failed} unreadable images in a row in {self.root}; stopping")
                continue
            failed = 0
            yield item
            produced += 1
            if produced >= share:
                return

    def decode(self, name: str, data: bytes, label: int, rng, augment: bool = True):
        """A training item (see training_item), or with augment=False (uint8 image, label) with
        the centre square of the image (the kNN bank)."""
        try:
            if not augment:
                return decode_item(data, self.channels, self.eval_size, "resize", decoder=self.decoder,
                                   pixels=self.pixels)[0], label
            decoded = decode_item(data, self.channels, self.size, self.mode, rng, self.crops, self.decoder,
                                  self.device_crops, self.pixels)
        except DECODE_ERRORS as e:
            self.bad.report(name, e)
            return None
        return training_item(decoded, label, self.transform)
