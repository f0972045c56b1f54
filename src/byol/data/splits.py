"""Choosing among listed images: random and per-class subsets, class-balanced held-out splits
(with byte-identical copies kept off both sides), and test labels matched to training classes."""
from __future__ import annotations

import contextlib
import os
import sys
import tarfile
from pathlib import Path

import torch

from byol.data.image_sets import MemoryImages
from byol.data.listing import DataError, ImageList, is_tar, read_all_bytes


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
    blobs = read_all_bytes(ImageList(held.root, names, [-1] * len(names)))
    digests = [hashlib.blake2b(b, digest_size=16).digest() for b in blobs]
    seen = set(digests[:len(rest_candidates)])
    return {i for i, d in zip(held_candidates, digests[len(rest_candidates):]) if d in seen}
